"""The REST API (`/api/v1`, OpenAPI at /api/v1/openapi.json).

Every route needs an API key (`Authorization: Bearer sohoa_...`) whose role allows it; a dossier or
batch of an agency the key does not hold answers 404, exactly like one that does not exist.
Every answer a route can give is declared in the OpenAPI document, every error in one shape
(api/errors.py), and no input makes a 5xx: text is bounded and without control characters,
integers and cursors are checked before they reach the catalog.

(No `from __future__ import annotations` here: FastAPI reads the route annotations at runtime, and
they refer to dependencies local to create_app.)
"""


import base64
import binascii
import hmac
import re
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as Path_
from fastapi.responses import FileResponse, Response, StreamingResponse
from fastapi.security import APIKeyHeader, HTTPBearer
from kombu.exceptions import OperationalError
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, WithJsonSchema
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from api.bulk_routes import add_bulk_routes
from api.errors import MAX_INT, PRINTABLE, PRINTABLE_LINES, answers, invalid, text
from api.errors import install as install_error_handlers
from api.keys import KeyStore, Principal
from api.scanner_routes import add_scanner_routes
from api.status_routes import add_status_routes
from api.web.security import CSRF_HEADER, UNSAFE_METHODS, session_of
from ingest import component_review
from ingest.pipeline import Pipeline
from ingest.settings import Settings
from ocr.components import TYPES as COMPONENT_TYPES
from ocr.pdf import page_jpeg
from scanners.devices import Scanners
from scanners.scan import ScanService
from scanners.spool import Spool
from storage import reports, search
from storage.audit import AuditWriter, Event
from storage.integrity import problems
from storage.integrity import verify as verify_archive
from storage.objects import ObjectMissing, ObjectStore
from storage.records import BatchRecord, Manifest

UPLOAD_CHUNK = 1 << 20
BATCH_ID = re.compile(r"b[0-9a-f]{24}")  # ingest.pipeline.Pipeline.receive

# ---- POST /api/v1/batches: the upload, parsed as it arrives --------------------------------

UPLOAD_SLACK = 64 * 1024  # multipart headers and boundaries around the file, at most
UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "string", "format": "binary"},
                   "dossier": {"type": "string", "maxLength": 64, "pattern": PRINTABLE,
                               "description": "the dossier code, if known (422 for one the "
                                              "office's code grammar does not accept)"}}}}}}}
_NO_FILE = ("body", "file"), "Field required", "missing"
Figure = Literal["received", "digitized", "full_components", "result", "signed"]
RESULT_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "string", "format": "binary"}}}}}}}


def _refuse_result(pipeline: Pipeline, path: Path, code: str, file_name: str,
                   agency: str) -> str:
    """A result for a dossier the sender cannot see (none, or another agency's): its original
    is kept as a failed batch of the sender's agency, never lost; `sohoa batch retry` stores it
    once the dossier exists."""
    batch_id = pipeline.receive(path, source="upload", dossier=code, file_name=file_name,
                                agency=agency, result=True)
    record = pipeline.record(batch_id)
    if record.status == "received":
        record.status = "failed"
        record.error = f"no dossier {code}: a result needs its dossier"
        pipeline.save_record(record)
    return batch_id


_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f-\x9f/\\]")


class _TooBig(Exception):
    pass


class _Upload:
    """A multipart/form-data upload of one `file` part (and the small fields its route reads,
    `names`), parsed as it comes: the file written to a temporary file in `incoming`, counted
    against `limit` bytes (_TooBig past it), not held in memory. Other fields are skipped
    unread, as their schema allows. 400/422 for a body that is not one."""

    FIELD_MAX = 4096

    def __init__(self, content_type: str, incoming: Path, limit: int,
                 names: frozenset[str] = frozenset()) -> None:
        kind, options = parse_options_header(content_type)
        if kind != b"multipart/form-data" or not options.get(b"boundary"):
            raise invalid(*_NO_FILE)
        self.incoming, self.limit, self.names = incoming, limit, names
        self.size = 0
        self.path: Path | None = None
        self.file_name: str | None = None
        self.fields: dict[str, str] = {}
        self._file: Any = None
        self._buffer = bytearray()
        self._part: str | None = None  # the form field being read
        self._in_file = False
        self._value = bytearray()
        self._header = [b"", b""]
        self._disposition = b""
        self._ended = False
        try:
            self._parser = MultipartParser(options[b"boundary"], {
                "on_part_begin": self._begin, "on_header_field": self._header_field,
                "on_header_value": self._header_value, "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished, "on_part_data": self._data,
                "on_part_end": self._part_end, "on_end": self._end})
        except (FormParserError, ValueError) as e:
            raise HTTPException(400, f"the multipart boundary cannot be used: {e}") from None

    def write(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except (FormParserError, ValueError) as e:
            raise HTTPException(400, f"the multipart body cannot be read: {e}") from None

    def pending(self) -> int:
        return len(self._buffer)

    def flush(self) -> None:
        if self._buffer:
            self._file.write(self._buffer)
            self._buffer.clear()

    def finish(self) -> None:
        """The body is all there: the file written whole, or 400/422 why not."""
        self.flush()
        if self._file is not None:
            self._file.close()
        if not self._ended:
            raise HTTPException(400, "the multipart body ends before its closing boundary")
        if self.path is None:
            raise invalid(*_NO_FILE)

    def discard(self) -> None:
        """The temporary file goes, whatever happened (the original is in the store by now)."""
        if self._file is not None:
            self._file.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    def _begin(self) -> None:
        self._part, self._in_file, self._disposition = None, False, b""
        self._value.clear()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header[0] += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._header[1] += data[start:end]

    def _header_end(self) -> None:
        if self._header[0].lower() == b"content-disposition":
            self._disposition = self._header[1]
        self._header = [b"", b""]

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name == "file" and b"filename" in options:
            if self.path is not None:
                raise invalid(("body", "file"), "one file per upload")
            raw = options[b"filename"].decode("utf-8", "replace").replace("\\", "/")
            # Its last part, without control characters: kept in the batch record.
            self.file_name = _UNSAFE_NAME.sub("", Path(raw).name)[:200].strip() or "upload"
            suffix = Path(self.file_name).suffix.lower()[:6]
            self._file = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed in finish/discard)
                dir=self.incoming, suffix=suffix if suffix[1:].isalnum() else "", delete=False)
            self.path = Path(self._file.name)
            self._part, self._in_file = None, True
        elif name in self.names:
            self._part = name

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self.size += end - start
            if self.size > self.limit:
                raise _TooBig
            self._buffer += data[start:end]
        elif len(self._value) + end - start > self.FIELD_MAX:
            raise invalid(("body", self._part or ""), "too long")
        else:
            self._value += data[start:end]

    def _part_end(self) -> None:
        if self._part is not None:
            if self._part in self.fields:  # which one was meant? neither: say so
                raise invalid(("body", self._part), "given more than once: give it once")
            self.fields[self._part] = self._value.decode("utf-8", "replace")

    def _end(self) -> None:
        self._ended = True



def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """One `bytes=a-b`, `bytes=a-` or `bytes=-n` range, clipped to the object; None for the whole
    object; 416 for a range outside it. Several ranges are answered with the whole object."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[6:].strip().partition("-")
    try:
        if first:
            start, end = int(first), int(last) if last else size - 1
        else:
            start, end = max(0, size - int(last)), size - 1
    except ValueError:
        return None
    if start >= size or start > end:
        raise HTTPException(416, "range not satisfiable", headers={"Content-Range": f"bytes */{size}"})
    return start, min(end, size - 1)


class _File(FileResponse):
    """A FileResponse of the one byte range already checked (`byte_range`), or of the whole file,
    whatever the request's Range header says: so that every answer is one the API declares."""

    def __init__(self, path: Path, wanted: tuple[int, int] | None, **kw: Any) -> None:
        super().__init__(path, **kw)
        self.wanted = wanted

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"range"]
        if self.wanted is not None:
            headers.append((b"range", f"bytes={self.wanted[0]}-{self.wanted[1]}".encode()))
        await super().__call__({**scope, "headers": headers}, receive, send)


def _encode(cursor: str) -> str:
    return base64.urlsafe_b64encode(cursor.encode()).decode()


def _decode(cursor: str) -> str:
    """Raises ValueError (UnicodeDecodeError is one) for anything we did not hand out."""
    try:
        return base64.b64decode(cursor.encode(), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeError):
        raise ValueError("not base64 of a cursor") from None


_CODE_MAX = 64  # dossier codes are ~25 characters; ids of batches, scans and scanners fewer
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _cursor_code(code: str) -> str:
    if not code or len(code) > _CODE_MAX or _CONTROL.search(code):
        raise ValueError("its dossier code is not one")
    return code


def dossier_cursor(after: str | None) -> search.Position | None:
    """Where a page of GET /dossiers starts (its `next`: a code, or a score and a code for a
    search with words); 422 "bad cursor" otherwise."""
    if not after:
        return None
    try:
        position = search.Position.decode(_decode(after))
        _cursor_code(position.code)
        return position
    except ValueError as e:
        raise invalid(("query", "after"), f"bad cursor: {e}") from None


def event_position(after: str | None) -> tuple[str, str, int, int] | None:
    """(at, code, kind rank, number) of a `next` of GET /events; 422 "bad cursor" for anything
    else: a date-time that is none, a rank other than 0 (versions), 1 (corrections) or 2
    (results), a number
    outside 0..2**62 (nothing larger reaches the database)."""
    if not after:
        return None
    try:
        parts = _decode(after).split("|")
        if len(parts) == 3:  # cursors handed out before corrections were in the feed
            parts = [parts[0], parts[1], "0", parts[2]]
        if len(parts) != 4:
            raise ValueError("its parts are not those of one")
        at, code, rank, number = parts
        try:
            when = datetime.fromisoformat(at)
        except ValueError:
            raise ValueError("its date-time is not one") from None
        if not (rank.isascii() and rank.isdigit() and int(rank) in (0, 1, 2)):
            raise ValueError("its kind is not one")
        if not (number.isascii() and number.isdigit() and len(number) <= 19
                and int(number) <= MAX_INT):
            raise ValueError("its number is out of range")
        return when.isoformat(), _cursor_code(code), int(rank), int(number)
    except ValueError as e:
        raise invalid(("query", "after"), f"bad cursor: {e}") from None


_ISO = re.compile(r"\d{4}-\d{2}-\d{2}(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?"
                  r"(?:[Zz]|[+-]\d{2}(?::?\d{2})?)?)?")


def _iso_only(value: Any) -> Any:
    """Pydantic takes numbers for date-times (seconds since 1970): only ISO 8601 here."""
    if value is None or isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO.fullmatch(value):
        raise ValueError("not an ISO 8601 date or date-time (such as 2024-05-01 or "
                         "2024-05-01T08:00:00+07:00)")
    return value


def _utc(value: datetime | None) -> datetime | None:
    """An offset date-time as UTC (as the catalog keeps them); one without, as it is."""
    if value is None or value.tzinfo is None:
        return value
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range") from None


IsoDateTime = Annotated[
    datetime | None, BeforeValidator(_iso_only), AfterValidator(_utc),
    WithJsonSchema({"anyOf": [{"type": "string", "format": "date-time"},
                              {"type": "string", "format": "date"}, {"type": "null"}]})]
def _date_only(value: Any) -> Any:
    """Pydantic takes numbers for dates (seconds since 1970): only YYYY-MM-DD here."""
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return value
    raise ValueError("not a date (YYYY-MM-DD)")


IsoDate = Annotated[date, BeforeValidator(_date_only),
                    WithJsonSchema({"type": "string", "format": "date"})]
CURSOR = "the `next` of an earlier answer, as it was given (anything else is 422 \"bad cursor\")"
# A key is `sohoa_<id>_<secret>`: anything longer or with control characters is none.
_TOKEN_MAX = 256


def create_app(settings: Settings, submit: Callable[..., BatchRecord] | None = None,
               scans: ScanService | None = None,
               resume: Callable[[str], BatchRecord] | None = None) -> FastAPI:
    """`submit(path, dossier=, source=, file_name=, agency=, device=, incomplete=)` queues a stored
    upload; by default the Celery tasks of ingest/tasks.py (and `resume(batch_id)`, their
    retry). `scans` runs scans on the office's
    eSCL scanners; by default those of the settings."""
    pipeline = Pipeline.from_settings(settings)
    keys = KeyStore(settings.storage.catalog_url)
    audit = pipeline.audit
    assert audit is not None
    writer = AuditWriter(audit)

    def log(request: Request, who: Principal, action: str, target: str, agency: str,
            **detail: Any) -> None:
        """Reads are written within milliseconds in batches; uploads wait until written."""
        remote = request.client.host if request.client else ""
        writer.record(Event(who.key_id, action, target, agency, remote, detail),
                      wait=not action.endswith((".read", ".search")))
    if submit is None:
        from ingest.tasks import submit as celery_submit

        submit = celery_submit
    if resume is None:
        from ingest.tasks import retry as celery_retry

        resume = celery_retry
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        writer.close()  # flush the audit entries still queued

    app = FastAPI(title="sohoa", version="1", openapi_url="/api/v1/openapi.json",
                  docs_url="/api/v1/docs", redoc_url=None, lifespan=lifespan)

    # Declared in the OpenAPI document (either one); read below, as they come.
    bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer sohoa_...`")
    api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="the same key")

    def principal(request: Request, _bearer: Annotated[Any, Depends(bearer)],
                  _api_key: Annotated[Any, Depends(api_key)]) -> Principal:
        """The API key's principal; without a key, the web app's signed-in user (whose writes
        must carry the session's CSRF token in X-CSRF-Token), so pages can use these routes."""
        auth = request.headers.get("authorization", "")
        token = auth[7:] if auth.lower().startswith("bearer ") else request.headers.get("x-api-key")
        token = token.strip() if token else token
        usable = token and len(token) <= _TOKEN_MAX and token.isprintable()
        found = keys.authenticate(token) if usable else None
        if found is None and not token and (session := session_of(request)) is not None:
            if request.method in UNSAFE_METHODS and not hmac.compare_digest(
                    request.headers.get(CSRF_HEADER, "").encode(), session.csrf.encode()):
                raise HTTPException(403, "the X-CSRF-Token header of the session is required")
            return session.user.principal
        if found is None:
            raise HTTPException(401, "a valid API key is required",
                                headers={"WWW-Authenticate": "Bearer"})
        return found

    def role(*allowed: str) -> Callable[[Principal], Principal]:
        def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
            if who.role not in allowed and who.role != "admin":
                raise HTTPException(403, f"the {who.role} role cannot do this")
            return who
        return check

    if scans is None:
        scans = ScanService(
            Scanners.from_config(settings.scanners, settings.storage.data_dir),
            Spool(settings.scanners.spool_dir), submit, settings.storage.data_dir / "scans")
    add_scanner_routes(app, scans, role, log,
                       lambda code: found.agency if (found := pipeline.grammar.match(code))
                       else None)
    app.state.scans = scans  # the web app's scanning station uses the same service
    add_status_routes(app, pipeline, scans.scanners, role, log)

    def visible_dossier(code: str, who: Principal) -> dict[str, Any]:
        """The live dossier; 404 if missing or another agency's; 410 Gone if a person withdrew
        the code as misread (its pages are now dossier `renamed_to`, which the key also sees)."""
        assert pipeline.catalog is not None
        code = code.strip().upper()
        found = pipeline.catalog.dossier(code)
        if found is None:
            gone = pipeline.catalog.withdrawal(code)
            to = gone["to"] if gone else None
            if gone and to and who.sees(gone["agency"]) and \
                    (found_to := pipeline.grammar.match(to)) and who.sees(found_to.agency):
                raise HTTPException(410, {"message": f"dossier {code} was renamed to {to}",
                                          "dossier_id": code, "renamed_to": to,
                                          "version": gone["version"], "at": gone["at"]})
        if found is None or not who.sees(found["agency"]):
            raise HTTPException(404, "no such dossier")
        return found

    def visible_batch(batch_id: str, who: Principal) -> BatchRecord:
        """The batch record; 404 if missing, malformed or another agency's."""
        if not BATCH_ID.fullmatch(batch_id):
            raise HTTPException(404, "no such batch")
        try:
            record = pipeline.record(batch_id)
        except (ObjectMissing, ValueError):
            raise HTTPException(404, "no such batch") from None
        if not who.sees(record.agency or ""):
            raise HTTPException(404, "no such batch")
        return record

    Code = Annotated[str, text(_CODE_MAX, Path_, description="a dossier code")]
    # Checked against its form before anything is looked up: any other string is 404.
    Id = Annotated[str, Path_(description="a batch id, `b` and 24 hexadecimal digits")]

    async def receive_upload(request: Request, *names: str) -> _Upload:
        """The request's multipart body written to disk as it comes, its file part finished.
        One over SOHOA_MAX_UPLOAD_MB is refused with 413 as soon as that is known (before a
        byte is read when Content-Length says so) and nothing of it is kept; a body cut off
        before its end is 400. The caller discards the upload when done with it."""
        incoming = settings.storage.data_dir / "incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        limit = settings.web.max_upload_mb * 1024 * 1024
        too_big = HTTPException(413, f"the upload is larger than {settings.web.max_upload_mb} MB "
                                     "(SOHOA_MAX_UPLOAD_MB): nothing was stored",
                                headers={"Connection": "close"})  # the rest of the body unread
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit + UPLOAD_SLACK:
            raise too_big
        upload = _Upload(request.headers.get("content-type", ""), incoming, limit,
                         frozenset(names))
        try:
            async for chunk in request.stream():
                upload.write(chunk)
                if upload.pending() >= UPLOAD_CHUNK:
                    await run_in_threadpool(upload.flush)
            await run_in_threadpool(upload.finish)
        except BaseException as e:
            upload.discard()
            if isinstance(e, _TooBig):
                raise too_big from None
            if isinstance(e, ClientDisconnect):
                raise HTTPException(400, "the upload was cut off before its end") from None
            raise
        return upload

    @app.post("/api/v1/batches", status_code=202, openapi_extra=UPLOAD_BODY,
              responses=answers(400, 404, 413, 503))
    async def upload_batch(request: Request,
                           who: Annotated[Principal, Depends(role("scanner"))]) -> dict[str, Any]:
        """Stores the upload as a batch (original first) and queues it; 202 with the batch id.
        The body is written to disk as it comes: one over SOHOA_MAX_UPLOAD_MB is refused with
        413 as soon as that is known (before a byte is read when Content-Length says so), and
        nothing of it is kept. Nothing here depends on the number of pages (ingest/tasks.py)."""
        upload = await receive_upload(request, "dossier")
        try:
            dossier = upload.fields.get("dossier") or None
            agency = who.agencies[0]
            if dossier:
                if (found := pipeline.grammar.match(dossier)) is None:
                    raise invalid(("body", "dossier"), f"{dossier!r} is not a dossier code")
                if not who.sees(found.agency):  # writes are scoped like reads: as if missing
                    raise HTTPException(404, "no such dossier")
                dossier, agency = found.code, found.agency
            assert upload.path is not None and upload.file_name is not None
            # A code of another agency read on a page makes no version either: its pages wait
            # in review for that agency (ingest/pipeline.py hold_other_agency).
            record = await run_in_threadpool(submit, upload.path, dossier=dossier,
                                             source="upload", file_name=upload.file_name,
                                             agency=agency, scope=list(who.agencies))
        except OperationalError as e:  # broker down: the original is stored, its start is not queued
            raise HTTPException(503, "the scan is stored but could not be queued (task broker "
                                     "unreachable); upload the same file again to resume") from e
        finally:
            upload.discard()
        await run_in_threadpool(log, request, who, "batch.upload", record.batch_id,
                                agency, file=upload.file_name, status=record.status)
        return {"batch_id": record.batch_id, "status": record.status,
                "error": record.error, "pages": record.pages}

    @app.post("/api/v1/dossiers/{code}/result", status_code=202, openapi_extra=RESULT_BODY,
              responses=answers(400, 404, 410, 413, 503))
    async def upload_result(code: Code, request: Request,
                            who: Annotated[Principal, Depends(role("scanner"))]
                            ) -> dict[str, Any]:
        """Stores the upload (a PDF or image of the decision, certificate or licence issued)
        as the next result of dossier `code`: original first, then processed like a batch
        (pages OCR'd, a searchable PDF/A, `result_added` in the feed); 202 with its id (a
        batch id: GET /api/v1/batches/{id} tells how it went). A dossier that does not exist
        or is another agency's answers 404, and the upload is kept as a failed batch."""
        found_code = pipeline.grammar.match(code.strip().upper())
        if found_code is None:  # as on every {code} route: no such dossier
            raise HTTPException(404, "no such dossier")
        upload = await receive_upload(request)
        try:
            assert upload.path is not None and upload.file_name is not None
            assert pipeline.catalog is not None
            try:  # 404 (none, another agency's) or 410 (a withdrawn code)
                dossier = await run_in_threadpool(visible_dossier, found_code.code, who)
            except HTTPException:
                batch_id = await run_in_threadpool(
                    _refuse_result, pipeline, upload.path, found_code.code, upload.file_name,
                    who.agencies[0])
                await run_in_threadpool(log, request, who, "dossier.result.refuse", batch_id,
                                        who.agencies[0], dossier=found_code.code,
                                        file=upload.file_name)
                raise
            record = await run_in_threadpool(submit, upload.path, dossier=found_code.code,
                                             source="upload", file_name=upload.file_name,
                                             agency=dossier["agency"],
                                             scope=list(who.agencies), result=True)
        except OperationalError as e:
            raise HTTPException(503, "the result is stored but could not be queued (task "
                                     "broker unreachable); upload the same file again to "
                                     "resume") from e
        finally:
            upload.discard()
        await run_in_threadpool(log, request, who, "dossier.result.upload", record.batch_id,
                                dossier["agency"], dossier=found_code.code,
                                file=upload.file_name, status=record.status)
        return {"id": record.batch_id, "batch_id": record.batch_id,
                "dossier_id": found_code.code, "status": record.status,
                "error": record.error}

    @app.get("/api/v1/dossiers/{code}/result/pdf", response_class=Response, responses={
        200: {"content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
              "description": "The PDF/A of the dossier's latest result"},
        **answers(404, 410)})
    def result_pdf(code: Code, request: Request,
                   who: Annotated[Principal, Depends(role("processor", "auditor"))]
                   ) -> Response:
        """The latest result's PDF/A (404 when the dossier has no result)."""
        found = visible_dossier(code, who)
        assert pipeline.catalog is not None
        result = pipeline.catalog.result(found["dossier_id"])
        if result is None:
            raise HTTPException(404, "the dossier has no result")
        log(request, who, "dossier.result.read", found["dossier_id"], found["agency"],
            version=result["version"])
        return Response(pipeline.store.get(result["pdf"]), media_type="application/pdf",
                        headers={"ETag": f'"{result["sha256"]}"', "Content-Disposition":
                                 f'attachment; filename="{found["dossier_id"]}-result.pdf"'})

    @app.get("/api/v1/reports/digitization", responses=answers())
    def digitization_report(request: Request,
                            who: Annotated[Principal, Depends(role("auditor"))],
                            from_: Annotated[IsoDate, Query(alias="from")],
                            to: Annotated[IsoDate, Query()],
                            agency: Annotated[str | None, text(_CODE_MAX)] = None
                            ) -> dict[str, Any]:
        """Dossiers received, digitized, digitized in full by component, with a digitized
        result and signed, with their shares (percent of received), per agency and month of
        receipt in Vietnam time (README "The digitization report"). Each figure has the link
        of the dossier list behind it. Auditors and admins; a scoped key sees its agencies.
        `from` and `to` are dates (YYYY-MM-DD), both included; `to` before `from` is an empty
        range."""
        assert pipeline.catalog is not None
        scope: tuple[str, ...] | None = who.scope()
        if agency:
            scope = (agency.upper(),) if who.sees(agency.upper()) else ()
        found = reports.digitization(pipeline.catalog, from_, to, scope)
        log(request, who, "report.digitization", "digitization", who.agencies[0],
            **{"from": from_.isoformat(), "to": to.isoformat(), "asked_agency": agency,
               "via": "api"})
        body = found.to_dict()
        for row in [*body["rows"], *body["totals"], body["total"]]:
            row["links"] = {f: reports.list_link("/api/v1/dossiers", f, row["agency"] or None,
                                                 row["month"], from_, to)
                            for f in reports.FIGURES}
        return body

    @app.get("/api/v1/batches/{batch_id}", responses=answers(404))
    def batch_status(batch_id: Id, request: Request,
                     who: Annotated[Principal, Depends(role("scanner"))]) -> dict[str, Any]:
        record = visible_batch(batch_id, who)
        done = len(pipeline.pages_done(batch_id))
        log(request, who, "batch.read", batch_id, record.agency or "")
        keys_ = ("batch_id", "file", "status", "error", "pages", "dossiers", "unmatched_pages",
                 "dropped_pages", "failed_pages", "review", "received_at", "source", "device",
                 "incomplete", "waiting_for")
        stored = record.as_dict()  # the API answers with the record's keys as stored
        return {**{k: stored.get(k) for k in keys_}, "pages_done": done}

    @app.post("/api/v1/batches/{batch_id}/retry", status_code=202,
              responses=answers(404, 409, 503))
    def retry_batch(batch_id: Id, request: Request,
                    who: Annotated[Principal, Depends(role("scanner"))]) -> dict[str, Any]:
        """Resumes a batch now: one waiting for a dependency (registry, object store, database),
        one that failed, or one whose work was lost; 409 if it is already done or in review."""
        record = visible_batch(batch_id, who)
        if record.status in ("done", "needs_review"):
            raise HTTPException(409, f"the batch is already {record.status}")
        try:
            record = resume(batch_id)
        except OperationalError as e:
            raise HTTPException(503, "the batch could not be queued (task broker unreachable); "
                                     "try again") from e
        log(request, who, "batch.retry", batch_id, record.agency or "", status=record.status)
        return {"batch_id": batch_id, "status": record.status, "error": record.error,
                "waiting_for": record.waiting_for}

    @app.get("/api/v1/dossiers", responses=answers())
    def list_dossiers(request: Request, who: Annotated[Principal, Depends(role("processor", "auditor"))],
                      q: Annotated[str, text(200)] = "",
                      agency: Annotated[str | None, text(_CODE_MAX)] = None,
                      procedure: Annotated[str | None, text(200)] = None,
                      updated_from: IsoDateTime = None, updated_to: IsoDateTime = None,
                      after: Annotated[str | None, text(1024, description=CURSOR)] = None,
                      limit: Annotated[int, Query(ge=1, le=200)] = 50,
                      figure: Annotated[Figure | None, Query(
                          description="only the dossiers behind this figure of the "
                                      "digitization report")] = None,
                      month: Annotated[str | None, Query(
                          pattern=r"^\d{4}-(0[1-9]|1[0-2])$",
                          description="received in this month (YYYY-MM, Vietnam time)")] = None,
                      received_from: Annotated[IsoDate | None, Query()] = None,
                      received_to: Annotated[IsoDate | None, Query()] = None) -> dict[str, Any]:
        """Without `q`, the dossiers by code; with `q`, a ranked search of fields and OCR text,
        accents optional (code, ID, applicant, then address, procedure, then OCR text; the words
        as a phrase first): each item has a `snippet`, the text as written, HTML-escaped, the
        matched words in `<mark>`. When no dossier holds every word, the names most like the
        query (`similar_names`). `about`: how many the caller may see match, counted up to
        1000 (`more`: beyond). Cursor-paginated (`next`). `updated_from` and `updated_to` are
        ISO 8601 dates or date-times. `figure`, `month`, `received_from` and `received_to`
        (receipt dates, Vietnam time, both included) give the dossiers behind a figure of the
        digitization report."""
        assert pipeline.catalog is not None
        scope: tuple[str, ...] | None = who.scope()
        if agency:
            scope = (agency.upper(),) if who.sees(agency.upper()) else ()
        cursor = dossier_cursor(after)
        where = reports.list_conditions(figure, month, received_from, received_to)
        try:
            found = pipeline.catalog.search_dossiers(
                search.Filters(scope, procedure, updated_from, updated_to, where), q, cursor,
                limit)
        except ValueError as e:  # a cursor of another search
            raise invalid(("query", "after"), f"bad cursor: {e}") from None
        items = [h.item() for h in found.hits]
        log(request, who, "dossier.search", q, who.agencies[0],
            results=[d["dossier_id"] for d in items])
        return {"items": items, "next": _encode(found.next.encode()) if found.next else None,
                "about": found.about, "more": found.more, "similar_names": found.fuzzy}

    @app.get("/api/v1/events", responses=answers())
    def events(who: Annotated[Principal, Depends(role("processor", "auditor"))],
               after: Annotated[str | None, text(1024, description=CURSOR)] = None,
               limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict[str, Any]:
        """Change feed for processing systems: poll with the `next` cursor of the last answer."""
        assert pipeline.catalog is not None
        scope = who.scope()
        position = event_position(after)
        items = pipeline.catalog.events(scope, position, limit)
        next_cursor = _encode("|".join(str(p) for p in items[-1]["position"])) if items else after
        return {"items": [{k: v for k, v in i.items() if k != "position"} for i in items],
                "next": next_cursor}

    class FieldCorrection(BaseModel):
        value: str = Field(min_length=1, max_length=2000, pattern=PRINTABLE)
        reason: str = Field(default="", max_length=500, pattern=PRINTABLE_LINES)

    @app.put("/api/v1/dossiers/{code}/fields/{name}", responses=answers(400, 404, 410))
    def correct_field(code: Code, name: Annotated[str, Path_(pattern=r"^[a-z][a-z0-9_]{0,63}$")],
                      body: FieldCorrection, request: Request,
                      who: Annotated[Principal, Depends(role("scanner", "processor"))]
                      ) -> dict[str, Any]:
        """Corrects a field of the latest version (kept beside what the machine read, audited,
        and in the change feed as `field_corrected`)."""
        found = visible_dossier(code, who)
        remote = request.client.host if request.client else ""
        return pipeline.dossiers.correct(found["dossier_id"], name, body.value.strip(), who.key_id,
                                      body.reason.strip(), remote).as_dict()

    pdf_body = {"content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}}

    @app.get("/api/v1/dossiers/{code}", responses=answers(404, 410))
    def dossier(code: Code, request: Request,
                who: Annotated[Principal, Depends(role("processor", "auditor"))]
                ) -> dict[str, Any]:
        """Fields, pages, versions and checksums of the latest version. A code that a person
        withdrew as misread (review: "correct the code") answers 410 Gone with
        `{"detail": {"message", "dossier_id", "renamed_to", "version", "at"}}`: its pages are
        now dossier `renamed_to` (the feed has a `withdrawn` event for it). So do its PDF and
        page routes. Another agency's code, or one whose new code is another agency's, is 404."""
        found = visible_dossier(code, who)
        log(request, who, "dossier.read", found["dossier_id"], found["agency"],
            version=found["version"])
        manifest = pipeline.dossiers.versions(found["dossier_id"])[-1]
        result = pipeline.catalog.result(found["dossier_id"]) if pipeline.catalog else None
        return {**found, "checksums": {name: o.sha256 for name, o in manifest.objects.items()},
                "original_sha256": manifest.original.sha256,
                # the agency's signature of this version (ingest/signing.py); older versions
                # were made before signing existed
                "signature": manifest.signature or {"status": "unsigned"},
                **components_of(manifest),
                "result": None if result is None else {
                    "version": result["version"], "sha256": result["sha256"],
                    "received_at": result["received_at"], "signature": result["signature"],
                    "download": f"/api/v1/dossiers/{found['dossier_id']}/result/pdf"}}

    def components_of(manifest: Manifest) -> dict[str, Any]:
        """The version's components (each with its copy's checksum and download path) and
        whether every document its receipt lists was found."""
        code = manifest.dossier_id
        items = []
        for c in manifest.components or []:
            stored = manifest.objects.get(c["object"])
            items.append({**c, "sha256": stored.sha256 if stored else None,
                          "pdf": f"/api/v1/dossiers/{code}/components/{c['n']}/pdf"})
        return {"components": items,
                "complete_by_components": bool(manifest.complete_by_components),
                "missing_components": manifest.missing_components or [],
                "components_listed": manifest.components_listed or []}

    class ComponentIn(BaseModel):
        start_page: int = Field(ge=1, le=100_000, description="1-based page of the dossier")
        type: Literal[COMPONENT_TYPES]  # type: ignore[valid-type]
        title: str = Field(min_length=1, max_length=200, pattern=PRINTABLE)

    class ComponentsIn(BaseModel):
        components: list[ComponentIn] = Field(min_length=1, max_length=1000)
        reason: str = Field(default="", max_length=500, pattern=PRINTABLE_LINES)

    @app.post("/api/v1/dossiers/{code}/components", responses=answers(400, 404, 410))
    def correct_components(code: Code, body: ComponentsIn, request: Request,
                           who: Annotated[Principal, Depends(role("scanner", "processor"))]
                           ) -> dict[str, Any]:
        """Sets the dossier's components as a person sees them (a boundary moved, a component
        renamed or retyped): a new version with the same pages and these components, each
        copy made again, audited with the change; the same request again changes nothing."""
        found = visible_dossier(code, who)
        asked = [c.model_dump() for c in body.components]
        try:
            manifest = component_review.correct_components(
                pipeline, found["dossier_id"], asked, who.key_id, body.reason.strip())
        except component_review.ComponentsError as e:
            loc = ("body", "components", *([e.index] if e.index is not None else []),
                   *([e.field] if e.field else []))
            raise invalid(loc, str(e)) from None
        return {"dossier_id": manifest.dossier_id, "version": manifest.version,
                **components_of(manifest)}

    @app.get("/api/v1/dossiers/{code}/components/{n}/pdf", response_class=Response, responses={
        200: {**pdf_body, "description": "The PDF/A copy of component `n` of the latest version"},
        304: {"description": "Unchanged since the ETag of If-None-Match"},
        **answers(404, 410)})
    def component_pdf(code: Code, n: Annotated[int, Path_(ge=1, le=10_000)], request: Request,
                      who: Annotated[Principal, Depends(role("processor", "auditor"))]
                      ) -> Response:
        """Component `n` (1-based, as listed in the dossier) as its own PDF/A, with its SHA-256
        as ETag; scoped and audited like the dossier's PDF."""
        found = visible_dossier(code, who)
        manifest = pipeline.dossiers.versions(found["dossier_id"])[-1]
        component = next((c for c in manifest.components or [] if c["n"] == n), None)
        stored = manifest.objects.get(component["object"]) if component else None
        if stored is None:
            raise HTTPException(404, "no such component")
        log(request, who, "dossier.component.read", found["dossier_id"], found["agency"],
            version=manifest.version, component=n)
        etag = f'"{stored.sha256}"'
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag})
        try:
            data = pipeline.store.get(stored.key)
        except ObjectMissing:
            raise HTTPException(404, "no such component") from None
        name = f'{found["dossier_id"]}-{component["object"].rsplit("/", 1)[-1]}'
        return Response(data, media_type="application/pdf",
                        headers={"ETag": etag,
                                 "Content-Disposition": f'inline; filename="{name}"'})

    @app.get("/api/v1/dossiers/{code}/verify", responses=answers(404, 410))
    def verify_dossier(code: Code, request: Request,
                       who: Annotated[Principal, Depends(role("auditor"))]) -> dict[str, Any]:
        """The archive's one verification (storage/integrity.py, as `sohoa verify CODE` and the
        web's "verify now"): every object against its manifest, the manifest against the
        checksum the audit log recorded, every version the catalog or audit log knows present.
        `ok` is false when anything changed or is missing; audited as `dossier.verify`."""
        return verify_one(visible_dossier(code, who), request, who, "api")

    def verify_one(found: dict[str, Any], request: Request, who: Principal,
                   via: str) -> dict[str, Any]:
        findings = verify_archive(pipeline.store, found["dossier_id"], pipeline.catalog,
                                  pipeline.audit, pipeline.settings.signing.trust_root_files)
        bad = [f.to_dict() for f in problems(findings)]
        # The same audit entry as the web's "verify now": the dossier page shows the last one.
        log(request, who, "dossier.verify", found["dossier_id"], found["agency"],
            result="problem" if bad else "ok", version=found["version"], objects=len(findings),
            problems=bad[:50], via=via)
        return {"dossier_id": found["dossier_id"], "version": found["version"],
                "ok": not bad, "checked": len(findings), "problems": bad,
                "findings": [f.to_dict() for f in findings]}

    add_bulk_routes(app, pipeline, role, log, visible_dossier, verify_one)

    @app.get("/api/v1/dossiers/{code}/pdf", response_class=Response, responses={
        200: {**pdf_body, "description": "The PDF/A of the latest version"},
        206: {**pdf_body, "description": "The part of it the Range asked for"},
        304: {"description": "Unchanged since the ETag of If-None-Match"},
        **answers(404, 410, 416)})
    def dossier_pdf(code: Code, request: Request,
                    who: Annotated[Principal, Depends(role("processor", "auditor"))]) -> Response:
        found = visible_dossier(code, who)
        manifest = pipeline.dossiers.versions(found["dossier_id"])[-1]
        pdf = manifest.objects["dossier.pdf"]
        log(request, who, "dossier.pdf.read", found["dossier_id"], found["agency"],
            version=manifest.version, range=request.headers.get("range"))
        etag = f'"{pdf.sha256}"'
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag})
        headers = {"ETag": etag}
        store: ObjectStore = pipeline.store
        path = store.file_path(pdf.key)
        if path is not None:
            # A store of files: the Range checked as for a remote one (416 outside the file, the
            # whole file for a malformed one or several), then answered by FileResponse (206).
            wanted = byte_range(request.headers.get("range"), path.stat().st_size)
            return _File(path, wanted, media_type="application/pdf", headers=headers,
                         filename=f"{found['dossier_id']}.pdf")
        size = store.size(pdf.key)
        headers["Accept-Ranges"] = "bytes"
        wanted = byte_range(request.headers.get("range"), size)
        if wanted is None:
            stream, status = store.open(pdf.key), 200
            headers["Content-Length"] = str(size)
        else:
            start, end = wanted
            stream, status = store.open_range(pdf.key, start, end - start + 1), 206
            headers.update({"Content-Range": f"bytes {start}-{end}/{size}",
                            "Content-Length": str(end - start + 1)})

        def body() -> Iterator[bytes]:
            with stream:
                while chunk := stream.read(UPLOAD_CHUNK):
                    yield chunk

        return StreamingResponse(body(), status_code=status, media_type="application/pdf",
                                 headers=headers)

    @app.get("/api/v1/dossiers/{code}/pages/{page}", response_class=Response, responses={
        200: {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
              "description": "The page as JPEG"},
        304: {"description": "Unchanged since the ETag of If-None-Match"},
        **answers(404, 410)})
    def page_image(code: Code, page: Annotated[int, Path_(ge=1, le=100_000)], request: Request,
                   who: Annotated[Principal, Depends(role("processor", "auditor"))],
                   size: Annotated[int | None, Query(ge=32, le=2000)] = None) -> Response:
        """Page `page` (1-based) of the latest version as JPEG; `size` = longest side in pixels
        (a thumbnail), else full resolution."""
        found = visible_dossier(code, who)
        manifest = pipeline.dossiers.versions(found["dossier_id"])[-1]
        if page > len(manifest.pages):
            raise HTTPException(404, "no such page")
        log(request, who, "dossier.page.read", found["dossier_id"], found["agency"],
            version=manifest.version, page=page, size=size)
        etag = f'"{manifest.objects["dossier.pdf"].sha256[:32]}-{page}-{size or 0}"'
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag})
        with pipeline.store.local_path(manifest.objects["dossier.pdf"].key) as path:
            jpeg = page_jpeg(path, page - 1, size)
        return Response(jpeg, media_type="image/jpeg",
                        headers={"ETag": etag, "Cache-Control": "private, max-age=86400"})

    @app.get("/api/v1/audit", responses=answers())
    def audit_log(request: Request, who: Annotated[Principal, Depends(role("auditor"))],
                  after: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
                  limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict[str, Any]:
        """The audit trail of the key's agencies, oldest first; `next` is the last seq."""
        # Reading the trail is itself recorded, and waiting for that entry flushes every entry
        # queued before it: the answer includes the reads that just happened.
        writer.record(Event(who.key_id, "audit.trail", "audit", who.agencies[0],
                            request.client.host if request.client else "", {"after": after}),
                      wait=True)
        scope = who.scope()
        items = audit.entries(scope, after, limit)
        return {"items": items, "next": items[-1]["seq"] if items else after}

    from api.web.pages import add_web_routes  # the back-office web app (api/web): pages, not /api

    add_web_routes(app, settings, pipeline, log)
    install_error_handlers(app)  # in front of the web app's: its pages keep theirs
    return app


def app_from_env() -> FastAPI:
    """The app on settings from the environment: the factory uvicorn's worker processes call."""
    return create_app(Settings())
