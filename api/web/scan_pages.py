"""The scanning station (/scan): pick a scanner, start a scan, watch its pages arrive, follow the
batches. For scanning staff (role scanner; admins too), within their agencies: another agency's
scanner, scan, batch or thumbnail answers 404, as if it did not exist; a scan is started only for
one of their agencies and a dossier code of one (another is refused, saying so).

Pages are rendered on the server; htmx polls small fragments (the running scan every second, the
batch list every few seconds while something is under way) because office networks are slow.
Thumbnails are small JPEGs made once per page, kept under data_dir/thumbs and cached by browsers:
a batch page is shown as the pipeline stored it (straightened), or from the original until then.

(No `from __future__ import annotations`: FastAPI reads the route annotations at runtime.)
"""

import io
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from PIL import Image

from api.keys import ALL_AGENCIES, Principal
from api.web import i18n
from api.web.render import jpeg_response, render
from api.web.security import WebState, language, require_role
from ocr.decode import open_document
from ocr.errors import DocumentError
from ocr.pdf import page_jpeg
from scanners.devices import Device
from scanners.escl import ADF_PROBLEMS, EsclError
from scanners.escl_xml import ScanRequest
from scanners.scan import ScanProgress, ScanService
from scanners.spool import PAGES, Spool
from storage import layout
from storage.catalog import HELD
from storage.objects import ObjectMissing

THUMB_SIDE = 200  # pixels, longest side: ~6 KB a page
THUMB_CACHE = "private, max-age=604800, immutable"  # a page's image never changes
BATCH_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
AGENCY = re.compile(r"^[A-Z0-9][A-Z0-9._-]{0,39}$")
RUNNING = ("starting", "scanning", "storing", "received", "processing")
FINAL_BATCH = ("done", "needs_review", "failed")
RECENT = 15  # rows of the batch list
STALE_AFTER_S = 6 * 3600  # a scan "running" this long died with its server: no more polling

# Scanner states (scanners/devices.py) shown as a badge: ok, warn or bad.
STATE_TONE = {"idle": "ok", "ready": "ok", "busy": "warn", "feeder_empty": "warn",
              "jammed": "bad", "door_open": "bad", "misfeed": "bad", "unreachable": "bad",
              "stopped": "bad", "unknown": "off"}

i18n.add(vi={
    "scan.title": "Quầy quét",
    "scan.intro": "Đặt hồ sơ vào máy quét, chọn máy rồi bấm “Bắt đầu quét”. Các trang hiện ra "
                  "ngay khi máy quét gửi về.",
    "scan.start.title": "Bắt đầu quét",
    "scan.form.scanner": "Máy quét",
    "scan.form.refresh": "Cập nhật trạng thái",
    "scan.form.looking": "Đang tìm các máy quét…",
    "scan.form.none": "Chưa có máy quét nào cho cơ quan của bạn. Hãy báo quản trị viên "
                      "cấu hình máy quét.",
    "scan.form.source": "Nguồn giấy",
    "scan.form.feeder": "Khay nạp giấy",
    "scan.form.feeder_hint": "nhiều tờ một lúc",
    "scan.form.platen": "Mặt kính",
    "scan.form.platen_hint": "một trang",
    "scan.form.duplex": "Quét hai mặt",
    "scan.form.duplex_hint": "chỉ dùng với khay nạp giấy",
    "scan.form.color": "Màu",
    "scan.form.color.Grayscale8": "Thang xám",
    "scan.form.color.RGB24": "Màu",
    "scan.form.color.BlackAndWhite1": "Đen trắng (tệp nhỏ)",
    "scan.form.resolution": "Độ phân giải",
    "scan.form.resolution_hint": "300 dpi cho hồ sơ thường; 200 dpi: tệp nhỏ hơn",
    "scan.form.dossier": "Mã hồ sơ",
    "scan.form.optional": "không bắt buộc",
    "scan.form.dossier_hint": "Gán cho cả lô khi các trang không có mã vạch; gõ tay hoặc "
                              "dùng đầu đọc mã vạch.",
    "scan.form.agency": "Cơ quan",
    "scan.form.agency_hint": "Cơ quan sở hữu lô này. Máy quét đã gắn với một cơ quan thì lô "
                             "thuộc cơ quan đó.",
    "scan.form.submit": "Bắt đầu quét",
    "scan.state.starting": "Đang khởi động",
    "scan.state.scanning": "Đang quét",
    "scan.state.storing": "Đang lưu",
    "scan.state.done": "Đã quét xong",
    "scan.state.incomplete": "Quét chưa hết",
    "scan.state.failed": "Không quét được",
    "scan.device.idle": "Sẵn sàng",
    "scan.device.ready": "Sẵn sàng · có giấy",
    "scan.device.busy": "Đang bận",
    "scan.device.feeder_empty": "Khay nạp giấy trống",
    "scan.device.jammed": "Kẹt giấy",
    "scan.device.door_open": "Nắp khay đang mở",
    "scan.device.misfeed": "Lỗi kéo giấy",
    "scan.device.unreachable": "Không kết nối được",
    "scan.device.stopped": "Máy báo lỗi",
    "scan.device.unknown": "Chưa rõ trạng thái",
    "scan.current.title": "Lượt quét hiện tại",
    "scan.current.none": "Chưa có lượt quét nào. Chọn máy quét ở bên trái rồi bấm “Bắt đầu "
                         "quét”.",
    "scan.current.pages": "{n} trang",
    "scan.current.progress": "Đang nhận trang từ máy quét",
    "scan.current.source.feeder": "khay nạp giấy",
    "scan.current.source.platen": "mặt kính",
    "scan.current.duplex": "hai mặt",
    "scan.current.dossier": "mã hồ sơ {code}",
    "scan.current.started": "bắt đầu lúc {at}",
    "scan.current.page": "Trang {n}",
    "scan.current.done": "Đã quét {n} trang và lưu thành một lô.",
    "scan.current.details": "Chi tiết kỹ thuật",
    "scan.outcome.processing": "Đang xử lý lô (tìm mã hồ sơ, tách hồ sơ)…",
    "scan.outcome.done": "Lô đã xử lý xong: tìm thấy {n} hồ sơ.",
    "scan.outcome.needs_review": "Lô cần kiểm tra: có trang chưa gắn được vào hồ sơ nào, "
                                 "hoặc lô quét chưa hết.",
    "scan.outcome.failed": "Không xử lý được lô này.",
    "scan.problem.feeder_empty": "Khay nạp giấy trống: hãy đặt hồ sơ vào khay rồi bấm “Bắt "
                                 "đầu quét” lại.",
    "scan.problem.jam": "Kẹt giấy trong khay nạp: gỡ tờ bị kẹt rồi quét tiếp các trang còn "
                        "lại. Các trang đã quét vẫn được giữ.",
    "scan.problem.misfeed": "Máy không kéo được giấy, hoặc kéo nhiều tờ cùng lúc: sắp lại "
                            "xấp giấy rồi quét lại các trang đó.",
    "scan.problem.door_open": "Nắp khay nạp giấy đang mở: đóng nắp rồi quét lại.",
    "scan.problem.feeder_error": "Khay nạp giấy báo lỗi (có thể quá nhiều giấy): kiểm tra "
                                 "khay rồi quét lại.",
    "scan.problem.busy": "Máy quét đang bận: chờ máy quét xong việc khác rồi thử lại.",
    "scan.problem.unreachable": "Không kết nối được với máy quét: kiểm tra máy đã bật và đã "
                                "nối mạng, rồi thử lại.",
    "scan.problem.refused": "Máy quét từ chối lượt quét: kiểm tra máy rồi thử lại.",
    "scan.problem.unsupported": "Máy quét này không hỗ trợ cách quét đã chọn (ví dụ quét hai "
                                "mặt, mặt kính hoặc chế độ màu này).",
    "scan.problem.certificate_changed": "Chứng chỉ bảo mật của máy quét đã thay đổi: hãy báo "
                                        "quản trị viên.",
    "scan.problem.device_error": "Máy quét báo lỗi: kiểm tra máy rồi thử lại.",
    "scan.problem.canceled": "Lượt quét đã bị hủy.",
    "scan.problem.connection_lost": "Mất kết nối với máy quét giữa chừng. Các trang đã nhận "
                                    "vẫn được giữ.",
    "scan.problem.empty_page": "Máy quét gửi về một trang trống (có thể do kẹt giấy): kiểm "
                               "tra khay nạp giấy.",
    "scan.problem.timeout": "Máy quét ngừng gửi trang: kiểm tra máy.",
    "scan.problem.aborted": "Máy quét dừng giữa chừng: có thể còn thiếu trang.",
    "scan.problem.no_pages": "Máy quét không gửi về trang nào.",
    "scan.problem.storage": "Chưa lưu được các trang vì kho lưu trữ không truy cập được. Các "
                            "trang được giữ lại và sẽ tự động lưu khi kho hoạt động lại.",
    "scan.problem.other": "Máy quét gặp sự cố.",
    "scan.problem.incomplete": "Lô được lưu với các trang đã quét và được đưa vào hàng chờ "
                               "kiểm tra.",
    "scan.error.pick_scanner": "Hãy chọn một máy quét.",
    "scan.error.scanner": "Không tìm thấy máy quét này. Bấm “Cập nhật trạng thái” rồi chọn "
                          "lại.",
    "scan.error.source": "Nguồn giấy phải là khay nạp giấy hoặc mặt kính.",
    "scan.error.duplex": "Chỉ quét hai mặt được khi dùng khay nạp giấy, không dùng với mặt "
                         "kính.",
    "scan.error.settings": "Hãy chọn chế độ màu và độ phân giải trong danh sách.",
    "scan.error.dossier": "“{code}” không phải là mã hồ sơ hợp lệ (ví dụ "
                          "000.00.04.H40-240315-0001).",
    "scan.error.agency": "Hãy chọn cơ quan sở hữu lô này.",
    "scan.error.not_yours": "Mã {code} thuộc cơ quan mà bạn không phụ trách.",
    "scan.error.busy": "Máy quét này đang quét một lô khác. Chờ lượt quét đó xong rồi thử "
                       "lại.",
    "scan.batches.title": "Các lô gần đây",
    "scan.batches.none": "Chưa có lô nào.",
    "scan.batches.device": "Máy quét / tệp",
    "scan.batches.received": "Nhận lúc",
    "scan.batches.pages": "Số trang",
    "scan.batches.status": "Trạng thái",
    "scan.batches.dossiers": "Hồ sơ tìm thấy",
    "scan.batches.more": "và {n} hồ sơ khác",
    "scan.batches.unmatched": "{n} trang chưa khớp",
    "scan.batches.open": "Xem",
    "scan.batches.follow": "Theo dõi",
    "scan.batches.review": "Kiểm tra",
    "scan.status.starting": "Đang khởi động",
    "scan.status.scanning": "Đang quét",
    "scan.status.storing": "Đang lưu",
    "scan.status.received": "Đã nhận",
    "scan.status.processing": "Đang xử lý",
    "scan.status.done": "Hoàn tất",
    "scan.status.needs_review": "Cần kiểm tra",
    "scan.status.failed": "Lỗi",
    "scan.status.waiting": "Đang chờ",
    "scan.outcome.waiting": "Lô đang chờ {dependency} hoạt động trở lại; hệ thống tự thử lại lúc "
                            "{next}. Các trang đã được lưu, không cần quét lại.",
    "scan.dependency.registry": "hệ thống xử lý hồ sơ (tra cứu mã hồ sơ)",
    "scan.dependency.object storage": "kho lưu trữ",
    "scan.dependency.database": "cơ sở dữ liệu",
    "scan.dependency.a service": "một dịch vụ",
    "scan.source.escl": "Máy quét",
    "scan.source.upload": "Tải lên",
    "scan.source.folder": "Thư mục",
    "scan.source.ftp": "FTP",
    "scan.source.email": "Email",
    "scan.source.cli": "Dòng lệnh",
    "scan.batch.title": "Lô {file}",
    "scan.batch.back": "← Quầy quét",
    "scan.batch.incomplete": "Quét chưa hết: {why}",
    "scan.batch.error": "Lỗi: {why}",
    "scan.batch.pages": "Các trang",
    "scan.batch.unmatched": "chưa khớp hồ sơ",
    "scan.batch.blank": "trang trống",
    "scan.batch.separator": "tờ phân cách",
    "scan.batch.failed_page": "không đọc được",
    "scan.batch.failed_reason": "Trang {n} không đọc được: {why}",
    "scan.batch.held": "chờ quyết định",
    "scan.batch.kept_current": "giữ phiên bản cũ",
    "scan.batch.no_pages": "Lô này chưa có trang nào để xem.",
}, en={
    "scan.title": "Scanning station",
    "scan.intro": "Put the dossier in the scanner, pick the scanner and press “Start scan”. Pages "
                  "show up as soon as the scanner sends them.",
    "scan.start.title": "Start a scan",
    "scan.form.scanner": "Scanner",
    "scan.form.refresh": "Refresh states",
    "scan.form.looking": "Looking for scanners…",
    "scan.form.none": "No scanner is set up for your agency yet. Ask an administrator to "
                      "configure one.",
    "scan.form.source": "Paper source",
    "scan.form.feeder": "Feeder (ADF)",
    "scan.form.feeder_hint": "many sheets",
    "scan.form.platen": "Flatbed",
    "scan.form.platen_hint": "one page",
    "scan.form.duplex": "Both sides (duplex)",
    "scan.form.duplex_hint": "feeder only",
    "scan.form.color": "Colour",
    "scan.form.color.Grayscale8": "Greyscale",
    "scan.form.color.RGB24": "Colour",
    "scan.form.color.BlackAndWhite1": "Black and white (small files)",
    "scan.form.resolution": "Resolution",
    "scan.form.resolution_hint": "300 dpi for ordinary dossiers; 200 dpi: smaller files",
    "scan.form.dossier": "Dossier code",
    "scan.form.optional": "optional",
    "scan.form.dossier_hint": "For the whole batch, when its pages carry no barcode; type it "
                              "or use a barcode reader.",
    "scan.form.agency": "Agency",
    "scan.form.agency_hint": "The agency this batch belongs to. A scanner set up for an agency "
                             "scans for that agency.",
    "scan.form.submit": "Start scan",
    "scan.state.starting": "Starting",
    "scan.state.scanning": "Scanning",
    "scan.state.storing": "Storing",
    "scan.state.done": "Scan finished",
    "scan.state.incomplete": "Scan incomplete",
    "scan.state.failed": "Scan failed",
    "scan.device.idle": "Ready",
    "scan.device.ready": "Ready · paper loaded",
    "scan.device.busy": "Busy",
    "scan.device.feeder_empty": "Feeder empty",
    "scan.device.jammed": "Paper jam",
    "scan.device.door_open": "Cover open",
    "scan.device.misfeed": "Misfeed",
    "scan.device.unreachable": "Unreachable",
    "scan.device.stopped": "Scanner fault",
    "scan.device.unknown": "State unknown",
    "scan.current.title": "Current scan",
    "scan.current.none": "No scan yet. Pick a scanner on the left and press “Start scan”.",
    "scan.current.pages": "{n} page(s)",
    "scan.current.progress": "Receiving pages from the scanner",
    "scan.current.source.feeder": "feeder",
    "scan.current.source.platen": "flatbed",
    "scan.current.duplex": "both sides",
    "scan.current.dossier": "dossier code {code}",
    "scan.current.started": "started at {at}",
    "scan.current.page": "Page {n}",
    "scan.current.done": "{n} page(s) scanned and stored as one batch.",
    "scan.current.details": "Technical details",
    "scan.outcome.processing": "Processing the batch (reading dossier codes, splitting)…",
    "scan.outcome.done": "Batch processed: {n} dossier(s) found.",
    "scan.outcome.needs_review": "The batch needs review: some pages belong to no dossier yet, "
                                 "or the scan is incomplete.",
    "scan.outcome.failed": "This batch could not be processed.",
    "scan.problem.feeder_empty": "The feeder is empty: load the pages and press “Start scan” "
                                 "again.",
    "scan.problem.jam": "Paper jam in the feeder: clear it, then scan the remaining pages. The "
                        "pages already scanned are kept.",
    "scan.problem.misfeed": "The feeder did not pick up a sheet, or took several at once: "
                            "straighten the stack and rescan those pages.",
    "scan.problem.door_open": "The feeder cover is open: close it and scan again.",
    "scan.problem.feeder_error": "The feeder reported a fault (too many sheets?): check it and "
                                 "scan again.",
    "scan.problem.busy": "The scanner is busy: wait until it is free, then try again.",
    "scan.problem.unreachable": "Cannot reach the scanner: check that it is on and connected to "
                                "the network, then try again.",
    "scan.problem.refused": "The scanner refused the scan: check it and try again.",
    "scan.problem.unsupported": "This scanner cannot scan that way (both sides, or the flatbed).",
    "scan.problem.certificate_changed": "The scanner's security certificate changed: tell an "
                                        "administrator.",
    "scan.problem.device_error": "The scanner reported an error: check it and try again.",
    "scan.problem.canceled": "The scan was canceled.",
    "scan.problem.connection_lost": "The connection to the scanner was lost midway. The pages "
                                    "received are kept.",
    "scan.problem.empty_page": "The scanner sent an empty page (a jam?): check the feeder.",
    "scan.problem.timeout": "The scanner stopped sending pages: check it.",
    "scan.problem.aborted": "The scanner stopped midway: pages may be missing.",
    "scan.problem.no_pages": "The scanner sent no pages.",
    "scan.problem.storage": "The pages could not be stored yet (storage unreachable). They are "
                            "kept and will be stored when storage is back.",
    "scan.problem.other": "The scanner ran into a problem.",
    "scan.problem.incomplete": "The pages scanned are stored as a batch and put in the review "
                               "queue.",
    "scan.error.pick_scanner": "Pick a scanner.",
    "scan.error.scanner": "No such scanner. Press “Refresh states” and pick one again.",
    "scan.error.source": "The paper source is the feeder or the flatbed.",
    "scan.error.duplex": "Both sides can only be scanned from the feeder, not the flatbed.",
    "scan.error.settings": "Pick a colour mode and a resolution from the lists.",
    "scan.error.dossier": "“{code}” is not a valid dossier code (for example "
                          "000.00.04.H40-240315-0001).",
    "scan.error.agency": "Pick the agency this batch belongs to.",
    "scan.error.not_yours": "Code {code} belongs to an agency you do not work for.",
    "scan.error.busy": "This scanner is scanning another batch. Wait until it is done, then try "
                       "again.",
    "scan.batches.title": "Recent batches",
    "scan.batches.none": "No batches yet.",
    "scan.batches.device": "Scanner / file",
    "scan.batches.received": "Received",
    "scan.batches.pages": "Pages",
    "scan.batches.status": "Status",
    "scan.batches.dossiers": "Dossiers found",
    "scan.batches.more": "and {n} more",
    "scan.batches.unmatched": "{n} unmatched page(s)",
    "scan.batches.open": "View",
    "scan.batches.follow": "Follow",
    "scan.batches.review": "Review",
    "scan.status.starting": "Starting",
    "scan.status.scanning": "Scanning",
    "scan.status.storing": "Storing",
    "scan.status.received": "Received",
    "scan.status.processing": "Processing",
    "scan.status.done": "Done",
    "scan.status.needs_review": "Needs review",
    "scan.status.failed": "Failed",
    "scan.status.waiting": "Waiting",
    "scan.outcome.waiting": "The batch is waiting for {dependency} to answer again; it is tried "
                            "again by itself at {next}. Its pages are stored: no need to scan "
                            "again.",
    "scan.dependency.registry": "the processing system (dossier code lookup)",
    "scan.dependency.object storage": "object storage",
    "scan.dependency.database": "the database",
    "scan.dependency.a service": "a service",
    "scan.source.escl": "Scanner",
    "scan.source.upload": "Upload",
    "scan.source.folder": "Folder",
    "scan.source.ftp": "FTP",
    "scan.source.email": "Email",
    "scan.source.cli": "Command line",
    "scan.batch.title": "Batch {file}",
    "scan.batch.back": "← Scanning station",
    "scan.batch.incomplete": "Incomplete scan: {why}",
    "scan.batch.error": "Error: {why}",
    "scan.batch.pages": "Pages",
    "scan.batch.unmatched": "no dossier",
    "scan.batch.blank": "blank page",
    "scan.batch.separator": "separator sheet",
    "scan.batch.failed_page": "unreadable",
    "scan.batch.failed_reason": "Page {n} could not be read: {why}",
    "scan.batch.held": "waits for a decision",
    "scan.batch.kept_current": "current version kept",
    "scan.batch.no_pages": "This batch has no pages to show yet.",
})


class FormError(Exception):
    """A start form the station refuses: `key` is the message, shown above the form."""

    def __init__(self, key: str, status: int = 422, **values: Any) -> None:
        super().__init__(key)
        self.key, self.status, self.values = key, status, values


@dataclass
class ScanForm:
    """What the staff chose; kept across a refused submission and the next scan."""

    scanner: str = ""
    source: str = "feeder"
    duplex: bool = False
    dossier: str = ""
    agency: str = ""
    color: str = "Grayscale8"
    resolution: int = 300


COLOR_MODES = ("Grayscale8", "RGB24", "BlackAndWhite1")  # eSCL names; the first is the default
RESOLUTIONS = (200, 300, 400, 600)  # a scanner without the one chosen scans at its nearest


@dataclass
class Row:
    """One line of the batch list: a stored batch, or a scan whose batch is not stored yet."""

    at: datetime
    status: str
    file: str = ""
    device: str = ""
    source: str = ""
    pages: int = 0
    batch_id: str | None = None
    scan_id: str | None = None
    dossiers: list[str] = field(default_factory=list)
    unmatched: int = 0

    @property
    def source_key(self) -> str | None:
        """How a batch not scanned at a station came in (upload, folder, FTP...)."""
        key = f"scan.source.{self.source}"
        return key if self.source != "escl" and key in i18n.VI else None


# ---- scans, scanners, batches within the user's agencies -------------------------------------


def _service(request: Request) -> ScanService:
    return request.app.state.scans


def _visible_device(device: Device, who: Principal) -> bool:
    return device.agency is None or who.sees(device.agency)


def _visible_scan(service: ScanService, scan_id: str, who: Principal) -> ScanProgress:
    found = service.get(scan_id) if scan_id.isalnum() and len(scan_id) <= 64 else None
    if found is None or not who.sees(found.agency or ""):
        raise HTTPException(404)
    return found


def _record(state: WebState, batch_id: str) -> dict[str, Any] | None:
    """The batch record from storage (the truth, also while processing), None if missing."""
    if not BATCH_ID.match(batch_id):
        return None
    try:
        return state.pipeline.record(batch_id)
    except (ObjectMissing, ValueError):
        return None


def _visible_batch(state: WebState, batch_id: str, who: Principal) -> dict[str, Any]:
    record = _record(state, batch_id)
    if record is None or not who.sees(record.get("agency") or ""):
        raise HTTPException(404)
    return record


def _scope(who: Principal) -> tuple[str, ...] | None:
    return None if ALL_AGENCIES in who.agencies else who.agencies


def _agency_choices(who: Principal) -> list[str]:
    """Agencies to pick from when neither the scanner nor the user settles it; [] if settled."""
    if ALL_AGENCIES in who.agencies or len(who.agencies) > 1:
        return [a for a in who.agencies if a != ALL_AGENCIES]
    return []


def _problem_key(progress: ScanProgress) -> str | None:
    """The message id for the scan's problem; a refusal names the feeder's trouble if it can."""
    if not progress.problem:
        return None
    code = progress.problem
    if code == "refused":
        code = next((c for c, text in ADF_PROBLEMS.values() if text == progress.message), code)
    key = f"scan.problem.{code}"
    return key if key in i18n.VI else "scan.problem.other"


def _stale(progress: ScanProgress) -> bool:
    return not progress.finished and time.time() - progress.started_at > STALE_AFTER_S


def _when(value: str | float | None) -> datetime:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    try:
        at = datetime.fromisoformat(value) if value else datetime.fromtimestamp(0, UTC)
    except ValueError:
        at = datetime.fromtimestamp(0, UTC)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _device_names(service: ScanService, scans: list[ScanProgress]) -> dict[str, str]:
    """Scanner id -> name, from the configuration and recent scans, without asking any scanner."""
    names = {c.uuid.lower(): c.name for c in service.scanners.configured if c.uuid and c.name}
    names.update((p.device_id, p.device_name) for p in scans)
    return names


def _row_of(record: dict[str, Any], names: dict[str, str], scan_id: str | None = None) -> Row:
    device = record.get("device") or ""
    return Row(at=_when(record.get("received_at")), status=record.get("status") or "received",
               file=record.get("file") or "", device=names.get(device, device),
               source=record.get("source") or "", pages=record.get("pages") or 0,
               batch_id=record["batch_id"], scan_id=scan_id,
               dossiers=[d["dossier_id"] for d in record.get("dossiers", [])],
               unmatched=len(record.get("unmatched_pages") or []))


def _batch_rows(state: WebState, service: ScanService, who: Principal) -> list[Row]:
    """Recent batches of the user's agencies: indexed (finished) ones from the catalog, plus the
    scans still running or whose batch is still being processed (not indexed yet)."""
    scans = [p for p in service.recent(50) if who.sees(p.agency or "")][:RECENT]
    names = _device_names(service, scans)
    catalog = state.pipeline.catalog
    rows = {r["batch_id"]: _row_of(r, names)
            for r in (catalog.recent_batches(_scope(who), RECENT) if catalog else [])}
    for p in scans:
        if p.batch_id in rows:
            rows[p.batch_id].scan_id = p.id
        elif p.batch_id:
            record = (catalog.batch(p.batch_id) if catalog else None) or _record(state, p.batch_id)
            if record:
                rows[p.batch_id] = _row_of(record, names, p.id)
        elif not p.finished and not _stale(p):
            rows[f"scan:{p.id}"] = Row(at=_when(p.started_at), status=p.state, device=p.device_name,
                                       source="escl", pages=p.pages, scan_id=p.id)
    return sorted(rows.values(), key=lambda r: r.at, reverse=True)[:RECENT]


# ---- thumbnails ------------------------------------------------------------------------------


def _thumbnail(img: Image.Image) -> bytes:
    img.draft("RGB" if img.mode == "RGB" else "L", (THUMB_SIDE * 2, THUMB_SIDE * 2))
    small = img.convert("RGB" if img.mode in ("RGB", "RGBA", "P", "CMYK") else "L")
    small.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.LANCZOS)
    out = io.BytesIO()
    small.save(out, "JPEG", quality=70, optimize=True)
    return out.getvalue()


def _cached(path: Path, make: Any) -> bytes | None:
    """The thumbnail at `path`, made by `make()` (bytes or None) the first time."""
    if path.exists():
        return path.read_bytes()
    data = make()
    if data is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    tmp.write_bytes(data)
    tmp.replace(path)
    return data


class SpoolPages:
    """A running scan's pages in the spool (incoming/ or ready/, same item name), by scan id."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self._items: dict[str, str] = {}

    def page(self, scan_id: str, number: int) -> bytes | None:
        name = self._items.get(scan_id) or self._find(scan_id)
        if name is None:
            return None
        for folder in (self.spool.incoming, self.spool.ready):
            path = folder / name / PAGES / f"{number:04d}.img"
            try:
                return path.read_bytes()
            except OSError:
                continue
        return None

    def _find(self, scan_id: str) -> str | None:
        for folder in (self.spool.incoming, self.spool.ready):
            for item in folder.iterdir() if folder.is_dir() else ():
                try:
                    meta = json.loads((item / "meta.json").read_text())
                except (OSError, ValueError):
                    continue
                if meta.get("scan_id") == scan_id:
                    self._items[scan_id] = item.name
                    return item.name
        return None


@cache
def _spool_pages(spool: Spool) -> SpoolPages:
    """One per spool (per app): it remembers where each scan's pages are."""
    return SpoolPages(spool)


def _processed_page(state: WebState, batch_id: str, index: int) -> bytes | None:
    """Page `index` (0-based) as the pipeline stored it, as a thumbnail; None before that."""
    key = layout.page_pdf(batch_id, index)
    try:
        return page_jpeg(io.BytesIO(state.pipeline.store.get(key)), 0, THUMB_SIDE, quality=70)
    except ObjectMissing:
        return None


def _batch_page(state: WebState, record: dict[str, Any], index: int) -> bytes | None:
    """Page `index` (0-based) of the batch's original, as a thumbnail."""
    try:
        with state.pipeline.store.local_path(record["original"]) as path:
            document = open_document(path, state.pipeline.limits)
            try:
                if index >= document.page_count:
                    return None
                return _thumbnail(document.page(index).image)
            finally:
                document.close()
    except (DocumentError, ObjectMissing, OSError, ValueError):
        return None


# ---- routes ----------------------------------------------------------------------------------


def add_routes(app: FastAPI, state: WebState) -> None:
    Staff = Annotated[Principal, Depends(require_role("scanner"))]
    thumbs = Path(state.settings.data_dir) / "thumbs"

    def batch_outcome(progress: ScanProgress | None) -> dict[str, Any] | None:
        record = _record(state, progress.batch_id) if progress and progress.batch_id else None
        if record is None:
            return None
        return {"batch_id": record["batch_id"], "status": record.get("status"),
                "dossiers": len(record.get("dossiers") or [])}

    def scan_context(request: Request, progress: ScanProgress | None) -> dict[str, Any]:
        batch = batch_outcome(progress)
        busy = progress is not None and not _stale(progress) and (not progress.finished or (
            batch is not None and batch["status"] not in FINAL_BATCH))
        return {"scan": progress, "batch": batch, "polling": busy,
                "started": _when(progress.started_at) if progress else None,
                "problem_key": _problem_key(progress) if progress else None,
                "seen": f"{progress.state}/{batch['status'] if batch else ''}" if progress else ""}

    def batches_context(who: Principal, request: Request) -> dict[str, Any]:
        rows = _batch_rows(state, _service(request), who)
        return {"rows": rows, "interval": 2 if any(r.status in RUNNING for r in rows) else 15}

    def page(request: Request, who: Principal, form: ScanForm,
             current: ScanProgress | None = None, error: str | None = None,
             status_code: int = 200) -> HTMLResponse:
        return render(request, "scan.html", {
            "form": form, "error": error, "agencies": _agency_choices(who),
            "color_modes": COLOR_MODES, "resolutions": RESOLUTIONS,
            "any_agency": ALL_AGENCIES in who.agencies,
            **scan_context(request, current), **batches_context(who, request)},
            status_code=status_code)

    @app.get("/scan", response_class=HTMLResponse, include_in_schema=False)
    def scan_page(request: Request, who: Staff, scan: str = "") -> HTMLResponse:
        current = _visible_scan(_service(request), scan, who) if scan else None
        form = ScanForm(scanner=current.device_id, source=current.source, duplex=current.duplex,
                        color=current.color_mode, resolution=current.resolution) \
            if current else ScanForm()
        return page(request, who, form, current)

    @app.post("/scan", include_in_schema=False)
    def start_scan(request: Request, who: Staff,
                   scanner: Annotated[str, Form(max_length=300)] = "",
                   source: Annotated[str, Form(max_length=20)] = "feeder",
                   duplex: Annotated[str, Form(max_length=10)] = "",
                   dossier: Annotated[str, Form(max_length=200)] = "",
                   agency: Annotated[str, Form(max_length=60)] = "",
                   color: Annotated[str, Form(max_length=20)] = COLOR_MODES[0],
                   resolution: Annotated[str, Form(max_length=5)] = "300") -> Response:
        form = ScanForm(scanner.strip(), source.strip(), duplex in ("1", "on", "true"),
                        dossier.strip().upper(), agency.strip().upper(), color.strip(),
                        int(resolution) if resolution.strip().isdigit() else 0)
        service = _service(request)
        try:
            device, for_agency = _checked(state, service, who, form)
            scan = ScanRequest(source=form.source, duplex=form.duplex, color_mode=form.color,
                               resolution=form.resolution)
            progress = service.start(device, scan, form.dossier or None, for_agency)
        except FormError as e:
            message = i18n.translate(language(request), e.key, **e.values)
            return page(request, who, form, error=message, status_code=e.status)
        except EsclError:  # this station already runs a scan on that scanner
            message = i18n.translate(language(request), "scan.error.busy")
            return page(request, who, form, error=message, status_code=409)
        state.audit(request, who, "scan.start", progress.id, for_agency or "", device=device.id,
                    source=form.source, duplex=form.duplex, color=form.color,
                    resolution=form.resolution, dossier=form.dossier or None)
        return RedirectResponse(f"/scan?scan={progress.id}", 303)

    @app.get("/scan/scanners", response_class=HTMLResponse, include_in_schema=False)
    def scanner_list(request: Request, who: Staff, scanner: str = "",
                     wanted: str = "") -> HTMLResponse:
        """The scanners' states, read now (each asked over the network)."""
        devices = [d for d in _service(request).scanners.refresh() if _visible_device(d, who)]
        chosen = scanner or wanted
        if not any(d.id == chosen for d in devices):
            usable = [d for d in devices if STATE_TONE.get(d.state) == "ok"] or devices
            chosen = usable[0].id if usable else ""
        return render(request, "scan_scanners.html", {
            "scanners": devices, "chosen": chosen, "tone": STATE_TONE})

    @app.get("/scan/scans/{scan_id}", response_class=HTMLResponse, include_in_schema=False)
    def scan_fragment(request: Request, who: Staff, scan_id: str, seen: str = "") -> HTMLResponse:
        """The running scan's panel, polled by htmx; tells the page when the scan or its batch
        has just finished, so the scanner and batch lists refresh."""
        context = scan_context(request, _visible_scan(_service(request), scan_id, who))
        response = render(request, "scan_progress.html", context)
        events = _events(seen, context)
        if events:
            response.headers["HX-Trigger"] = ", ".join(events)
        return response

    @app.get("/scan/batches", response_class=HTMLResponse, include_in_schema=False)
    def batch_list(request: Request, who: Staff) -> HTMLResponse:
        return render(request, "scan_batches.html", batches_context(who, request))

    @app.get("/scan/batches/{batch_id}", response_class=HTMLResponse, include_in_schema=False)
    def batch_page(request: Request, who: Staff, batch_id: str) -> HTMLResponse:
        record = _visible_batch(state, batch_id, who)
        state.audit(request, who, "batch.read", batch_id, record.get("agency") or "")
        names = _device_names(_service(request), _service(request).recent(50))
        return render(request, "scan_batch.html", {
            "record": record, "row": _row_of(record, names), "roles": _page_roles(record)})

    @app.get("/scan/scans/{scan_id}/pages/{number}.jpg", include_in_schema=False)
    def scan_thumbnail(request: Request, who: Staff, scan_id: str, number: int) -> Response:
        progress = _visible_scan(_service(request), scan_id, who)
        if not 1 <= number <= progress.pages:
            raise HTTPException(404)

        def make() -> bytes | None:
            data = _spool_pages(_service(request).spool).page(scan_id, number)
            if data is not None:
                with Image.open(io.BytesIO(data)) as img:
                    return _thumbnail(img)
            batch = _record(state, progress.batch_id) if progress.batch_id else None
            return _batch_page(state, batch, number - 1) if batch else None

        data = _cached(thumbs / "scans" / scan_id / f"{number:04d}.jpg", make)
        if data is None:
            raise HTTPException(404)
        return jpeg_response(request, data, f'"s-{scan_id}-{number}"', THUMB_CACHE)

    @app.get("/scan/batches/{batch_id}/pages/{number}.jpg", include_in_schema=False)
    def batch_thumbnail(request: Request, who: Staff, batch_id: str, number: int) -> Response:
        record = _visible_batch(state, batch_id, who)
        if not 1 <= number <= (record.get("pages") or 0):
            raise HTTPException(404)
        data = _cached(thumbs / "batches" / batch_id / f"{number:04d}.jpg",
                       lambda: _processed_page(state, batch_id, number - 1))
        if data is not None:  # the page as stored: straightened, turned upright
            return jpeg_response(request, data, f'"b-{batch_id}-{number}"', THUMB_CACHE)
        data = _batch_page(state, record, number - 1)  # not processed yet: from the original
        if data is None:
            raise HTTPException(404)
        return jpeg_response(request, data, f'"b-{batch_id}-{number}-scan"', "no-cache")


def _checked(state: WebState, service: ScanService, who: Principal,
             form: ScanForm) -> tuple[Device, str | None]:
    """The scanner and the agency the scan is for; FormError for what cannot be scanned."""
    if not form.scanner:
        raise FormError("scan.error.pick_scanner")
    try:
        device, _ = service.scanners.find(form.scanner)
    except KeyError:
        raise FormError("scan.error.scanner") from None
    if not _visible_device(device, who):
        raise FormError("scan.error.scanner")
    if form.source not in ("feeder", "platen"):
        raise FormError("scan.error.source")
    if form.duplex and form.source != "feeder":
        raise FormError("scan.error.duplex")
    if form.color not in COLOR_MODES or form.resolution not in RESOLUTIONS:
        raise FormError("scan.error.settings")
    if form.dossier:
        code = state.pipeline.grammar.match(form.dossier)
        if code is None:
            raise FormError("scan.error.dossier", code=form.dossier[:64])
        if not who.sees(code.agency):  # writes are scoped like reads: as for an upload
            raise FormError("scan.error.not_yours", code=code.code)
        form.dossier = code.code
    return device, _agency_for(who, device, form.agency)


def _agency_for(who: Principal, device: Device, asked: str) -> str | None:
    """The scanner's own agency, else the one asked (among the user's: another is refused, never
    replaced by the user's own), else the user's only one."""
    if device.agency:
        return device.agency
    if asked:
        if AGENCY.match(asked) and who.sees(asked):
            return asked
        raise FormError("scan.error.agency")
    if len(who.agencies) == 1 and who.agencies[0] != ALL_AGENCIES:
        return who.agencies[0]
    raise FormError("scan.error.agency")


def _events(seen: str, context: dict[str, Any]) -> list[str]:
    """htmx events for what finished since the poll that rendered `seen` (state/batch status)."""
    if not seen:
        return []
    was_state, _, was_batch = seen.partition("/")
    scan, batch = context["scan"], context["batch"]
    events = []
    if was_state and was_state not in ("done", "incomplete", "failed") and scan.finished:
        events.append("scan-finished")
    if batch and batch["status"] in FINAL_BATCH and was_batch not in FINAL_BATCH:
        events.append("batch-finished")
    return events


def _page_roles(record: dict[str, Any]) -> dict[int, tuple[str, str]]:
    """Page index -> (kind, label): the dossier it went to, or why it went to none."""
    roles: dict[int, tuple[str, str]] = {}
    for index in record.get("unmatched_pages") or []:
        roles[index] = ("unmatched", "scan.batch.unmatched")
    for dropped in record.get("dropped_pages") or []:
        reason = dropped.get("reason")
        key = f"scan.batch.{reason}"
        roles[dropped["page"]] = ("dropped", key if key in i18n.VI else "scan.batch.unmatched")
    for failed in record.get("failed_pages") or []:
        roles[failed["page"]] = ("failed", "scan.batch.failed_page")
    for entry in record.get("review") or []:
        if entry.get("reason") in HELD:
            roles.update({p: ("held", "scan.batch.held") for p in entry["pages"]})
    for dossier in record.get("dossiers") or []:
        for index in dossier.get("pages") or []:
            roles[index] = ("dossier", dossier["dossier_id"])
    return roles
