"""Addresses checked against the official list of administrative units (ocr/places.py and the
dossier stage that uses it)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ingest.dossier_stages import CheckAddresses
from ingest.pipeline import Pipeline
from ingest.runner import run_file
from ingest.settings import Settings
from ingest.stages import DossierWork
from ocr import places
from ocr.fields import Field
from tests import synth

CHIENG_LE = "Bản Phiêng, phường Chiềng Lề, thành phố Sơn La, tỉnh Sơn La"


def test_a_misread_tone_mark_in_a_wards_name_takes_the_lists_spelling() -> None:
    checked = places.check("Bản Phiêng, phường Chiềng Lé, thành phố Sơn La, tỉnh Sơn La")
    assert (checked.value, checked.repaired) == (CHIENG_LE, True)
    assert checked.place is not None
    assert checked.place.to_dict() == {
        "list": places.FORMER, "ward": "Phường Chiềng Lề", "ward_code": 3646,
        "district": "Thành phố Sơn La", "district_code": 116,
        "province": "Tỉnh Sơn La", "province_code": 14}


def test_an_address_spelled_as_the_list_is_located_and_left_as_it_is() -> None:
    checked = places.check(CHIENG_LE)
    assert (checked.value, checked.repaired) == (CHIENG_LE, False)
    assert checked.place is not None and checked.place.ward.code == 3646


def test_an_address_of_the_current_list_names_no_district() -> None:
    checked = places.check("Số 3 Tràng Tiền, phường Hoàn Kiểm, Thành phố Hà Nội")
    assert checked.value == "Số 3 Tràng Tiền, phường Hoàn Kiếm, Thành phố Hà Nội"
    assert checked.place is not None
    assert checked.place.to_dict() == {"list": places.CURRENT, "ward": "Phường Hoàn Kiếm",
                                       "ward_code": 70, "province": "Thành phố Hà Nội",
                                       "province_code": 1}


def test_a_district_named_means_the_former_list_even_where_a_ward_now_has_its_name() -> None:
    """Hoàn Kiếm is a ward now, a district before 1 July 2025."""
    checked = places.check("Số 12 phố Huế, phường Hàng Bài, quận Hoàn Kiếm, Hà Nội")
    assert checked.place is not None
    assert (checked.place.list, checked.place.ward.name, checked.place.district.name) == \
        (places.FORMER, "Phường Hàng Bài", "Quận Hoàn Kiếm")


def test_a_district_level_city_without_its_province_is_enough() -> None:
    checked = places.check("Xóm Đồng Tâm, xã Hưng Đạo, thành phố Cao Bằng")
    assert checked.place is not None
    assert (checked.place.ward.code, checked.place.province.name) == (1705, "Tỉnh Cao Bằng")


def test_one_letter_misread_in_a_long_name_is_repaired_and_abbreviations_are_kept() -> None:
    checked = places.check("12 Lê Lợi, P. Bến Nghẻ, Q.1, TP. HCM")
    assert checked.value == "12 Lê Lợi, P. Bến Nghé, Q.1, TP. HCM"
    assert checked.place is not None and checked.place.ward.code == 26740


@pytest.mark.parametrize("address", [
    "Thôn 2, xã Không Có Thật, tỉnh Sơn La",  # no such commune
    "Số 8 đường Lương Ngọc Quyến, thành phố Thái Nguyên",  # a city, but no ward named
    "Số 12 phố Huế",
    "",
])
def test_an_address_naming_no_known_ward_is_left_as_read(address: str) -> None:
    checked = places.check(address)
    assert (checked.value, checked.place, checked.repaired) == (address, None, False)


def test_a_ward_name_shared_by_several_districts_is_not_guessed() -> None:
    """Hải Dương, a province before 1 July 2025, had two communes named Hưng Đạo."""
    assert places.check("xã Hưng Đạo, tỉnh Hải Dương").place is None


def _work(**fields: Field) -> DossierWork:
    return DossierWork(batch_id="b", code="H40-1", agency="H40", code_source="barcode",
                       pages=[0], page_facts=[], page_pdfs=[], received_at="2026-12-03T09:00:00",
                       fields=dict(fields))


def test_the_stage_repairs_an_ocr_address_and_keeps_what_was_read() -> None:
    read = "Bản Phiêng, phường Chiềng Lé, thành phố Sơn La, tỉnh Sơn La"
    work = _work(address=Field(read, 0, 0.93, "ocr"))
    CheckAddresses()(work)
    f = work.fields["address"]
    assert (f.value, f.read_as, f.confidence) == (CHIENG_LE, read, 0.93)
    assert f.to_dict()["place"]["ward"] == "Phường Chiềng Lề"


def test_the_stage_lowers_the_confidence_of_an_address_naming_no_known_ward() -> None:
    work = _work(address=Field("Thôn 2, xã Không Có Thật, tỉnh Sơn La", 0, 0.97, "ocr"))
    CheckAddresses()(work)
    f = work.fields["address"]
    assert (f.value, f.confidence, f.place, f.read_as) == \
        ("Thôn 2, xã Không Có Thật, tỉnh Sơn La", CheckAddresses.UNKNOWN_PLACE, None, None)


def test_the_stage_locates_an_id_cards_qr_address_but_never_respells_it() -> None:
    exact = "Bản Phiêng, phường Chiềng Lé, thành phố Sơn La, tỉnh Sơn La"  # as the card says
    work = _work(permanent_address=Field(exact, 1, 1.0, "barcode"))
    CheckAddresses()(work)
    f = work.fields["permanent_address"]
    assert (f.value, f.confidence, f.read_as) == (exact, 1.0, None)
    assert f.place is not None and f.place["ward_code"] == 3646


def test_a_person_corrected_address_is_left_alone() -> None:
    work = _work(address=Field("Thôn 2, xã Không Có Thật", 0, 1.0, "user"))
    CheckAddresses()(work)
    assert work.fields["address"] == Field("Thôn 2, xã Không Có Thật", 0, 1.0, "user")


def test_a_scanned_receipt_with_a_misprinted_ward_is_stored_with_the_lists_spelling(
        tmp_path: Path) -> None:
    """Given a receipt whose address reads 'Chiềng Lé' (as OCR misreads 'Chiềng Lề'), when the
    batch is ingested, then the dossier's address field says 'Chiềng Lề', records what was read
    and the ward's code."""
    fields = synth.receipt_fields(0) | {
        "address": "Bản Phiêng, phường Chiềng Lé, thành phố Sơn La, tỉnh Sơn La"}
    page = synth.receipt("000.00.04.H40-230414-0007", fields)
    pdf = synth.write_pdf([(page, synth.Scan(seed=3))], tmp_path / "scan.pdf")
    pipeline = Pipeline.from_settings(Settings(data_dir=tmp_path / "data", workers=1))
    record = run_file(pipeline, pdf)
    address = record.dossiers[0].fields["address"]
    assert address["value"] == CHIENG_LE
    assert address["read_as"] == fields["address"]
    assert address["place"]["ward_code"] == 3646


class _Loads:
    name = "loads"

    def __init__(self, fails: bool = False) -> None:
        self.prepared, self.fails = 0, fails

    def prepare(self) -> None:
        self.prepared += 1
        if self.fails:
            raise OSError("list not found")

    def __call__(self, work: DossierWork) -> None:
        pass


def test_a_pipeline_prepares_the_stages_that_load_something_and_skips_the_others(
        pipeline: Pipeline) -> None:
    # given a dossier stage that loads a list, one that fails to, and the default stages
    loads, fails = _Loads(), _Loads(fails=True)
    pipeline.dossiers.stages = [fails, *pipeline.dossiers.stages, loads]
    # when the pipeline prepares its dossier stages
    pipeline.prepare_dossiers()
    # then each was asked once, a failure did not stop the others, and the lists are read
    assert (fails.prepared, loads.prepared) == (1, 1)
    assert places.lists()[places.CURRENT]


def test_the_lists_read_from_two_threads_at_once_are_read_once() -> None:
    # given the lists not yet read in this process
    places._read_lists.cache_clear()
    got: list[object] = []
    # when two threads ask for them at once
    threads = [threading.Thread(target=lambda: got.append(places.lists())) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then both have the same lists
    assert got[0] is got[1]
    assert places._read_lists.cache_info().misses == 1
