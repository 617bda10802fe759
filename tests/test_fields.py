"""Field extraction from receipt text lines and citizen-ID QR payloads."""

import pytest

from ocr.dossier_code import DossierCodeGrammar
from ocr.fields import citizen_id_fields, parse_datetime, receipt_fields

RECEIPT = [
    "GIẤY TIẾP NHẬN HỒ SƠ VÀ HẸN TRẢ KẾT QUẢ",
    "Mã hồ sơ: 000.00.04.H40-230414-0002",
    "Tiếp nhận hồ sơ của: Nguyễn Văn An",
    "Địa chỉ: Số 12 phố Huế, Hà Nội",
    "Số điện thoại: 0912 345 678    Email: An.Nguyen@example.vn",
    "Nội dung yêu cầu giải quyết: Đăng ký khai sinh",
    "3. Thời gian giải quyết hồ sơ theo quy định là: 05 (ngày làm việc)",
    "4. Thời gian nhận hồ sơ: 09 giờ 30 phút, ngày 14 tháng 04 năm 2023",
    "5. Thời gian trả kết quả giải quyết hồ sơ: 16 giờ 00 phút, ngày 15 tháng 04 năm 2023",
]


def extract(lines: list[str]) -> dict[str, str]:
    found = receipt_fields(lines, [0.9] * len(lines), 0, DossierCodeGrammar())
    return {k: f.value for k, f in found.items()}


def test_receipt_fields_are_keyed_on_labels() -> None:
    assert extract(RECEIPT) == {
        "dossier_id": "000.00.04.H40-230414-0002",
        "applicant_name": "Nguyễn Văn An",
        "address": "Số 12 phố Huế, Hà Nội",
        "phone": "0912345678",
        "email": "an.nguyen@example.vn",
        "procedure": "Đăng ký khai sinh",
        "received_at": "2023-04-14T09:30:00+07:00",
        "due_at": "2023-04-15T16:00:00+07:00",
    }


def test_renumbered_reordered_items_and_lost_accents_still_match() -> None:
    lines = ["7. Thoi gian tra ket qua: 15/04/2023", "Tiep nhan ho so cua: Tran Thi B",
             "2) Thời gian nhận hồ sơ: 08h15 ngày 14/04/2023"]
    assert extract(lines) == {"due_at": "2023-04-15", "applicant_name": "Tran Thi B",
                              "received_at": "2023-04-14T08:15:00+07:00"}


def test_ocr_field_carries_page_confidence_and_source() -> None:
    f = receipt_fields(RECEIPT, [0.5] * len(RECEIPT), 3, DossierCodeGrammar())["address"]
    assert (f.page, f.confidence, f.source) == (3, 0.5, "ocr")


@pytest.mark.parametrize("text", ["ngày 31 tháng 02 năm 2023", "không có ngày"])
def test_impossible_or_missing_dates_give_nothing(text: str) -> None:
    assert parse_datetime(text) is None


CCCD_7 = "001090012345|012345678|Nguyễn Văn An|15031990|Nam|Số 12 phố Huế, Hà Nội|20042021"


def test_cccd_qr_with_seven_fields() -> None:
    fields = {k: f.value for k, f in citizen_id_fields(CCCD_7, 2).items()}
    assert fields == {"citizen_id": "001090012345", "full_name": "Nguyễn Văn An",
                      "date_of_birth": "1990-03-15", "sex": "Nam",
                      "permanent_address": "Số 12 phố Huế, Hà Nội",
                      "id_issue_date": "2021-04-20"}


def test_cccd_qr_without_old_id_and_with_extra_fields() -> None:
    six = "079301001234|Lê Thị Hoa|01022001|Nữ|Quận 1, TP. Hồ Chí Minh|05062022"
    eight = CCCD_7 + "|Hà Nội"
    assert citizen_id_fields(six, 0)["sex"].value == "Nữ"
    assert citizen_id_fields(six, 0)["date_of_birth"].value == "2001-02-01"
    assert citizen_id_fields(eight, 0)["id_issue_date"].value == "2021-04-20"


def test_qr_fields_are_sourced_from_the_barcode() -> None:
    f = citizen_id_fields(CCCD_7, 4)["citizen_id"]
    assert (f.page, f.confidence, f.source) == (4, 1.0, "barcode")


@pytest.mark.parametrize("payload", ["PATCHT", "000.00.04.H40-230414-0002", "a|b|c|d|e|f"])
def test_other_payloads_are_not_id_cards(payload: str) -> None:
    assert citizen_id_fields(payload, 0) is None
