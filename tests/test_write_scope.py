"""Writes are scoped like reads (issue 11): every write route of the API and every action of the web
app, for every role (scanner, processor, auditor, admin) and every scope (the agency whose dossier,
batch, scanner or user is written, another agency, or `*`), over real HTTP, each case a test id
`<write>[-key|-session]-<role>-<scope>`.

What each case must get:

    done       the role may and the agency is its own (or `*`): the answer says so, and the change
               is there (a version, a correction, a scan started, a batch settled...)
    forbidden  the role may not: 403, and nothing changed
    missing    another agency's dossier, batch, scanner or user: answered like one that does not
               exist (404; the scan form's "no such scanner" 422), and nothing changed
    refused    a write that also names something outside the scope (pages of another agency
               waiting in a batch, a code of another agency typed into a form, a user of another
               agency to create): refused with its message, and nothing changed
    held       an upload from another agency whose barcode carries a code of this agency: taken
               (202), but no version is made; its pages wait in review as `other_agency`, seen
               by this agency's staff only

Agency A (000.00.60.H93) owns what is written; B (000.00.78.H22) is the other agency, as in
examples/sample-batch.pdf (its two dossiers, checked through the fast pipeline, give the pages
fresh dossiers are made of). Batches are tiny generated pages; a dossier read from a barcode is a
generated receipt; scans run on eSCL emulators (one of agency A, one shared by the office).
Cases that change something get fresh data; refusals share one target per write."""

from __future__ import annotations

import hashlib
import io
import itertools
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import img2pdf
import pytest
from PIL import Image, ImageDraw

from api.keys import KeyStore, Principal
from api.web.dossier_pages import VERIFY_ACTION, audit_entries
from api.web.review_pages import sees_page, waiting_batches
from ingest.pipeline import PageRef, Pipeline
from ingest.runner import run_file
from scanners.devices import ScannerConfig
from storage import layout
from tests import synth
from tests.browser import LiveApp, http_login, make_settings, serve
from tests.escl_emulator import EmulatorConfig, EsclEmulator

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "sample-batch.pdf"
A = "000.00.60.H93"  # the agency whose things every case writes
B = "000.00.78.H22"  # another agency
SAMPLE_CODES = {f"{A}-230405-0792": A, f"{B}-230427-5992": B}
ROLES = ("scanner", "processor", "auditor", "admin")
SCOPES = {"own": (A,), "other": (B,), "all": ("*",)}
OWN_SCANNER, SHARED_SCANNER = "5d2a6a51-0000-4000-8000-0000000000a1", \
    "5d2a6a51-0000-4000-8000-0000000000a2"
STATUS = {"forbidden": 403, "held": 202}
NOT_YOURS = "thuộc cơ quan mà bạn không phụ trách"


# ---- the running app, its principals and its data -------------------------------------------


@dataclass
class Actor:
    """One principal as an API key and as a signed-in web user of the same role and agencies."""
    role: str
    scope: str
    key: str
    web: httpx.Client
    csrf: str
    api_client: httpx.Client

    @property
    def principal(self) -> Principal:
        return Principal(f"test:{self.role}-{self.scope}", self.role, SCOPES[self.scope])

    @property
    def home(self) -> str:
        """The agency this principal scans for: its own, or A for `*`."""
        return B if self.scope == "other" else A

    def api(self, via: str, method: str, path: str, **kw: Any) -> httpx.Response:
        if via == "key":
            return self.api_client.request(method, path,
                                           headers={"Authorization": f"Bearer {self.key}"}, **kw)
        return self.web.request(method, path, headers={"X-CSRF-Token": self.csrf}, **kw)

    def form(self, path: str, **data: Any) -> httpx.Response:
        return self.web.post(path, data={"csrf": self.csrf, "action_id": uuid.uuid4().hex, **data})


@dataclass
class Env:
    live: LiveApp
    tmp: Path
    source: str  # the sample batch: its pages make fresh dossiers
    actors: dict[tuple[str, str], Actor]
    emulators: dict[str, EsclEmulator]
    resumed: list[str]
    shared: dict[str, Any] = field(default_factory=dict)
    _numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def pipeline(self) -> Pipeline:
        return self.live.pipeline

    def n(self) -> int:
        return next(self._numbers)

    def code(self, agency: str = A) -> str:
        return f"{agency}-230405-{self.n():04d}"

    def dossier(self, pages: int = 3, agency: str = A, code_source: str = "barcode") -> str:
        """A fresh dossier (version 1) made of pages of the sample batch."""
        code = self.code(agency)
        refs = [PageRef(self.source, i) for i in (0, 1, 2, 4, 5, 6)[:pages]]
        self.pipeline.dossiers.store_version(code, agency, code_source, refs, f"test:{code}")
        return code

    def page_file(self) -> Path:
        """A one-page PDF of a tiny page of text, different every time (no code on it)."""
        img = Image.new("L", (300, 420), 255)
        draw = ImageDraw.Draw(img)
        mark = uuid.uuid4().hex
        for i in range(12):
            draw.text((20, 20 + i * 30), f"{mark[:16]} dong {i} van ban", fill=0)
        buffer = io.BytesIO()
        img.save(buffer, "JPEG", quality=80, dpi=(50, 50))
        path = self.tmp / f"page-{mark}.pdf"
        path.write_bytes(img2pdf.convert(buffer.getvalue()))
        return path

    def receipt_file(self, code: str) -> Path:
        """A one-page PDF of the receipt of `code`, its Code 128 readable."""
        n = self.n()
        scan = synth.Scan(noise=2.0, blur=0.3, seed=n)
        sheet = synth.receipt(code, synth.receipt_fields(n % 9 + 1), 200, "code128")
        path = self.tmp / f"receipt-{n}.pdf"
        path.write_bytes(img2pdf.convert(synth.encode(synth.degrade(sheet, scan), 200, scan)))
        return path

    def batch(self, agency: str = A, **kw: Any) -> str:
        """A batch of agency `agency` whose one page waits in review."""
        record = run_file(self.pipeline, self.page_file(), agency=agency, source="scan", **kw)
        assert record.status == "needs_review" and record.unmatched_pages == [0], record
        return record.batch_id

    def versions(self, code: str) -> list[tuple[int, bool, tuple[tuple[str, int, int], ...]]]:
        return [(m.version, bool(m.withdrawn),
                 tuple((r.batch_id, r.index, r.rotate) for r in Pipeline.page_refs(m)))
                for m in self.pipeline.dossiers.versions(code)]

    def code_source(self, code: str) -> str:
        return self.pipeline.dossiers.versions(code)[-1].code_source

    def fields(self, code: str) -> dict[str, Any]:
        found = self.pipeline.catalog.dossier(code)  # type: ignore[union-attr]
        return {k: v.get("value") for k, v in found["fields"].items()} if found else {}

    def batch_state(self, batch_id: str) -> tuple[Any, ...]:
        r = self.pipeline.record(batch_id)
        return (r.status, r.unmatched_pages, r.dropped_pages, r.review,
                r.incomplete_checked, r.resolved, r.error)

    def scans(self) -> tuple[int, tuple[int, ...]]:
        """Scans started (the station's list) and the jobs each emulated scanner was sent."""
        return (len(self.live.app.state.scans.recent(1000)),
                tuple(len(e.settings) for e in self.emulators.values()))

    def settle(self) -> None:
        """Waits until no scan runs: the next case finds its scanner free."""
        deadline = time.monotonic() + 60
        while any(not p.finished for p in self.live.app.state.scans.recent(20)):
            assert time.monotonic() < deadline, "a scan did not finish"
            time.sleep(0.05)


def tiny_jpeg() -> bytes:
    img = Image.new("L", (300, 420), 255)
    draw = ImageDraw.Draw(img)
    for i in range(12):
        draw.text((20, 20 + i * 30), f"trang quet {i}", fill=0)
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=80, dpi=(50, 50))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    import ingest.tasks

    tmp = tmp_path_factory.mktemp("write-scope")
    resumed: list[str] = []
    with ExitStack() as stack:
        emulators = {}
        for uuid_ in (OWN_SCANNER, SHARED_SCANNER):
            emulator = EsclEmulator(EmulatorConfig(pages=[tiny_jpeg()], uuid=uuid_)).start()
            stack.callback(emulator.stop)
            emulators[uuid_] = emulator
        settings = make_settings(tmp, scanners=[
            ScannerConfig(url=emulators[OWN_SCANNER].url, name="Máy quét H93",
                          uuid=OWN_SCANNER, agency=A),
            ScannerConfig(url=emulators[SHARED_SCANNER].url, name="Máy quét chung",
                          uuid=SHARED_SCANNER)])
        resumer = Pipeline.from_settings(settings)

        def retry(batch_id: str) -> dict[str, Any]:  # POST .../retry without a task queue
            resumed.append(batch_id)
            return resumer.resume(batch_id, reset=True)

        patch = stack.enter_context(pytest.MonkeyPatch.context())
        patch.setattr(ingest.tasks, "retry", retry)
        live = stack.enter_context(serve(settings))
        # The sample batch, sent by a key of all agencies: its two dossiers, one per agency.
        record = run_file(live.pipeline, SAMPLE, agency=A, source="upload", scope=["*"])
        found = {d.dossier_id: live.pipeline.catalog.dossier(d.dossier_id)["agency"]  # type: ignore[union-attr]
                 for d in record.dossiers}
        assert found == SAMPLE_CODES
        keys = KeyStore(settings.storage.catalog_url)
        api_client = stack.enter_context(httpx.Client(base_url=live.url, trust_env=False,
                                                      timeout=60))
        actors = {}
        for role in ROLES:
            for scope, agencies in SCOPES.items():
                web, csrf = http_login(live.url, *live.user(role, list(agencies)))
                stack.callback(web.close)
                actors[role, scope] = Actor(role, scope, keys.create(role, list(agencies)), web,
                                            csrf, api_client)
        yield Env(live, tmp, record.batch_id, actors, emulators, resumed)


# ---- the writes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Write:
    """One write route or web action: who may, how it is sent, what it changes."""
    name: str
    roles: tuple[str, ...]  # the roles that may (admin always may)
    prepare: Callable[[Env], Any]  # a fresh target
    send: Callable[[Env, Actor, str, Any], httpx.Response]  # (env, actor, via, target)
    look: Callable[[Env, Any], Any]  # what the write changes, to compare before and after
    check: Callable[[Env, Any, httpx.Response], None]  # the change is there (after "done")
    ok: int = 303
    vias: tuple[str, ...] = ("web",)
    own: str = "done"
    other: str = "missing"
    all: str = "done"
    missing_status: int = 404
    refused_status: int = 422
    says: str = ""  # what a refusal or a missing answer says (its message, in Vietnamese)
    held: Callable[[Env, Any, httpx.Response], None] | None = None


def expected(write: Write, role: str, scope: str) -> str:
    if role != "admin" and role not in write.roles:
        return "forbidden"
    return {"own": write.own, "other": write.other, "all": write.all}[scope]


def status_of(write: Write, outcome: str) -> int:
    return {"done": write.ok, "missing": write.missing_status,
            "refused": write.refused_status}.get(outcome) or STATUS[outcome]


def checked_all(*checks: bool) -> None:
    assert all(checks), checks


def redirected_to(answer: httpx.Response, start: str) -> str:
    location = answer.headers.get("location", "")
    assert location.startswith(start), location
    return location


# -- API (each with an API key and with a web session) --

def upload(env: Env, actor: Actor, via: str, path: Path, dossier: str | None = None) -> httpx.Response:
    data = {"dossier": dossier} if dossier else {}
    return actor.api(via, "POST", "/api/v1/batches", data=data,
                     files={"file": (path.name, path.read_bytes(), "application/pdf")})


def stored_batches(env: Env, path: Path) -> list[str]:
    """The batches this file was stored as, by any sender's agency."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    ids = ["b" + hashlib.sha256(f"{a}:{digest}".encode()).hexdigest()[:24] for a in (A, B, "*")]
    return [i for i in ids if env.pipeline.store.exists(layout.batch_record(i))]


def new_version_from(env: Env, code: str, answer: httpx.Response) -> None:
    *_, (version, withdrawn, refs) = env.versions(code)
    assert version == 2 and not withdrawn
    assert {r[0] for r in refs} == {answer.json()["batch_id"]}


def held_for_a(env: Env, target: tuple[str, Path], answer: httpx.Response) -> None:
    """No version; the pages wait in review as other_agency, for A's staff and not B's."""
    code, _ = target
    assert [v for v, *_ in env.versions(code)] == [1]
    record = env.pipeline.record(answer.json()["batch_id"])
    assert record.status == "needs_review" and record.agency == B
    assert [(r.code, r.agency, r.pages) for r in record.review
            if r.reason == "other_agency"] == [(code, A, [0])]
    staff = {scope: Principal(scope, "processor", agencies) for scope, agencies in SCOPES.items()}
    assert record.batch_id in {r.batch_id for r in waiting_batches(env.pipeline, staff["own"])}
    assert sees_page(staff["own"], record, 0) and sees_page(staff["all"], record, 0)
    assert not sees_page(staff["other"], record, 0)  # the sender's staff


def failed_batch(env: Env) -> str:
    batch_id = env.pipeline.receive(env.page_file(), agency=A, source="upload")
    record = env.pipeline.record(batch_id)
    record.status, record.error = "failed", "the test broke it"
    env.pipeline.save_record(record)
    return batch_id


def api_scan(device: str, agency: str | None = None, dossier: bool = False
             ) -> Callable[[Env, Actor, str, Any], httpx.Response]:
    """A scan on `device` for `agency`; with `dossier`, for the target's code (then for the
    principal's own agency: A, B for another agency's principal)."""
    def send(env: Env, actor: Actor, via: str, target: Any) -> httpx.Response:
        body = {"dossier": target, "agency": actor.home} if dossier else \
            {"agency": agency} if agency else {}
        return actor.api(via, "POST", f"/api/v1/scanners/{device}/scans", json=body)
    return send


def scan_started(env: Env, target: Any, answer: httpx.Response) -> None:
    scan = env.live.app.state.scans.get(answer.json()["id"])
    assert scan is not None and scan.agency == A


def upload_result(env: Env, actor: Actor, via: str, code: str, path: Path) -> httpx.Response:
    return actor.api(via, "POST", f"/api/v1/dossiers/{code}/result",
                     files={"file": (path.name, path.read_bytes(), "application/pdf")})


API = [
    Write("api-upload-result", ("scanner",),
          prepare=lambda env: (env.dossier(pages=1), env.page_file()),
          send=lambda env, actor, via, t: upload_result(env, actor, via, t[0], t[1]),
          look=lambda env, t: [m.version for m in env.pipeline.dossiers.results(t[0])],
          check=lambda env, t, answer: checked_all(
              env.pipeline.catalog.result(t[0])["batch_id"] == answer.json()["id"]),
          ok=202, vias=("key", "session")),
    Write("api-upload-dossier", ("scanner",),
          prepare=lambda env: (env.dossier(pages=1), env.page_file()),
          send=lambda env, actor, via, t: upload(env, actor, via, t[1], t[0]),
          look=lambda env, t: (env.versions(t[0]), stored_batches(env, t[1])),
          check=lambda env, t, answer: new_version_from(env, t[0], answer),
          ok=202, vias=("key", "session")),
    Write("api-upload-barcode", ("scanner",),
          prepare=lambda env: (code := env.dossier(pages=1), env.receipt_file(code)),
          send=lambda env, actor, via, t: upload(env, actor, via, t[1]),
          look=lambda env, t: env.versions(t[0]),
          check=lambda env, t, answer: new_version_from(env, t[0], answer),
          ok=202, vias=("key", "session"), other="held", held=held_for_a),
    Write("api-retry", ("scanner",),
          prepare=failed_batch,
          send=lambda env, actor, via, t: actor.api(via, "POST", f"/api/v1/batches/{t}/retry"),
          look=lambda env, t: (env.batch_state(t), env.resumed.count(t)),
          check=lambda env, t, answer: checked_all(
              env.resumed.count(t) == 1, env.pipeline.record(t).status == "received"),
          ok=202, vias=("key", "session")),
    Write("api-field", ("scanner", "processor"),
          prepare=lambda env: (env.dossier(pages=1), uuid.uuid4().hex),
          send=lambda env, actor, via, t: actor.api(
              via, "PUT", f"/api/v1/dossiers/{t[0]}/fields/ghi_chu",
              json={"value": t[1], "reason": "đối chiếu giấy tiếp nhận"}),
          look=lambda env, t: env.fields(t[0]),
          check=lambda env, t, answer: checked_all(env.fields(t[0])["ghi_chu"] == t[1]),
          ok=200, vias=("key", "session")),
    Write("api-components", ("scanner", "processor"),
          prepare=lambda env: (env.dossier(pages=1), uuid.uuid4().hex),
          send=lambda env, actor, via, t: actor.api(
              via, "POST", f"/api/v1/dossiers/{t[0]}/components",
              json={"components": [{"start_page": 1, "type": "form", "title": t[1]}]}),
          look=lambda env, t: components_of(env, t[0]),
          check=lambda env, t, answer: checked_all(components_of(env, t[0])[-1][0] == t[1]),
          ok=200, vias=("key", "session")),
    Write("api-scan-scanner", ("scanner",),
          prepare=lambda env: None, send=api_scan(OWN_SCANNER),
          look=lambda env, t: env.scans(), check=scan_started, ok=202, vias=("key", "session")),
    Write("api-scan-agency", ("scanner",),
          prepare=lambda env: None, send=api_scan(SHARED_SCANNER, agency=A),
          look=lambda env, t: env.scans(), check=scan_started, ok=202, vias=("key", "session")),
    Write("api-scan-dossier", ("scanner",),
          prepare=lambda env: env.code(), send=api_scan(SHARED_SCANNER, dossier=True),
          look=lambda env, t: env.scans(), check=scan_started, ok=202, vias=("key", "session")),
]


# -- the scanning station --

def web_scan(device: str, agency: str | None = None, dossier: bool = False
             ) -> Callable[[Env, Actor, str, Any], httpx.Response]:
    """The station's start form, as api_scan."""
    def send(env: Env, actor: Actor, via: str, target: Any) -> httpx.Response:
        chosen = {"dossier": target, "agency": actor.home} if dossier else \
            {"agency": agency} if agency else {}
        return actor.web.post("/scan", data={"csrf": actor.csrf, "scanner": device,
                                             "resolution": "200", **chosen})
    return send


def web_scan_started(env: Env, target: Any, answer: httpx.Response) -> None:
    scan_id = redirected_to(answer, "/scan?scan=").split("=", 1)[1]
    scan = env.live.app.state.scans.get(scan_id)
    assert scan is not None and scan.agency == A


SCAN = [
    Write("web-scan-scanner", ("scanner",), prepare=lambda env: None,
          send=web_scan(OWN_SCANNER), look=lambda env, t: env.scans(), check=web_scan_started,
          missing_status=422, says="Không tìm thấy máy quét này."),
    Write("web-scan-agency", ("scanner",), prepare=lambda env: None,
          send=web_scan(SHARED_SCANNER, agency=A), look=lambda env, t: env.scans(),
          check=web_scan_started, other="refused", says="Hãy chọn cơ quan sở hữu lô này."),
    Write("web-scan-dossier", ("scanner",), prepare=lambda env: env.code(),
          send=web_scan(SHARED_SCANNER, dossier=True), look=lambda env, t: env.scans(),
          check=web_scan_started, other="refused", says=NOT_YOURS),
]


# -- the review queue: a batch --

REVIEW = ("scanner", "processor")


def batch_op(op: str, code: Callable[[Any], str] | None = None
             ) -> Callable[[Env, Actor, str, Any], httpx.Response]:
    def send(env: Env, actor: Actor, via: str, target: Any) -> httpx.Response:
        batch_id = target[0] if isinstance(target, tuple) else target
        data = {"pages": "1"} if op != "incomplete" else {}
        if code is not None:
            data["code"] = code(target)
        return actor.form(f"/review/batches/{batch_id}/{op}", **data)
    return send


def held_rescan(env: Env) -> tuple[str, str]:
    """A batch of A whose one page is a rescan of a two-page dossier: held for a decision."""
    code = env.dossier(pages=2)
    return env.batch(dossier=code), code


def held_other(env: Env) -> tuple[str, str]:
    """A batch sent by B whose page carries a code of A: held as other_agency, for A."""
    code = env.code()
    return env.batch(agency=B, dossier=code), code


def dropped(env: Env, batch_id: str, reason: str) -> None:
    assert [(d.page, d.reason) for d in env.pipeline.record(batch_id).dropped_pages] \
        == [(0, reason)]


def assigned(env: Env, target: tuple[str, str], answer: httpx.Response) -> None:
    batch_id, code = target
    assert env.versions(code)[-1][2][-1][:2] == (batch_id, 0)  # the page is the version's last
    assert env.pipeline.record(batch_id).unmatched_pages == []


NOT_WAITING = "Có trang đã chọn không còn chờ gán"

BATCHES = [
    Write("web-assign", REVIEW, prepare=lambda env: (env.batch(), env.code()),
          send=batch_op("assign", lambda t: t[1]),
          look=lambda env, t: (env.batch_state(t[0]), env.versions(t[1])),
          check=lambda env, t, answer: assigned(env, t, answer)),
    Write("web-assign-to-other", REVIEW, prepare=lambda env: (env.batch(), env.code(B)),
          send=batch_op("assign", lambda t: t[1]),
          look=lambda env, t: (env.batch_state(t[0]), env.versions(t[1])),
          check=lambda env, t, answer: pytest.fail("a page became a dossier of B"),
          own="refused", all="refused"),
    Write("web-discard", REVIEW, prepare=lambda env: env.batch(), send=batch_op("discard"),
          look=lambda env, t: env.batch_state(t),
          check=lambda env, t, answer: dropped(env, t, "set_aside")),
    Write("web-incomplete", REVIEW, prepare=lambda env: env.batch(incomplete="jam"),
          send=batch_op("incomplete"), look=lambda env, t: env.batch_state(t),
          check=lambda env, t, answer: checked_all(
              bool(env.pipeline.record(t).incomplete_checked))),
    Write("web-replace", REVIEW, prepare=held_rescan, send=batch_op("replace"),
          look=lambda env, t: (env.batch_state(t[0]), env.versions(t[1])),
          check=lambda env, t, answer: assigned(env, t, answer)),
    Write("web-keep", REVIEW, prepare=held_rescan, send=batch_op("keep"),
          look=lambda env, t: (env.batch_state(t[0]), env.versions(t[1])),
          check=lambda env, t, answer: dropped(env, t[0], "kept_current")),
    # Pages of A held in a batch of B: A's staff decide; B's do not even see them.
    Write("web-replace-held", REVIEW, prepare=held_other, send=batch_op("replace"),
          look=lambda env, t: (env.batch_state(t[0]), env.versions(t[1])),
          check=lambda env, t, answer: assigned(env, t, answer),
          other="refused", says=NOT_WAITING),
    Write("web-keep-held", REVIEW, prepare=held_other, send=batch_op("keep"),
          look=lambda env, t: (env.batch_state(t[0]), env.versions(t[1])),
          check=lambda env, t, answer: dropped(env, t[0], "kept_current"),
          other="refused", says=NOT_WAITING),
    Write("web-discard-held", REVIEW, prepare=held_other, send=batch_op("discard"),
          look=lambda env, t: (env.batch_state(t[0]), env.versions(t[1])),
          check=lambda env, t, answer: dropped(env, t[0], "set_aside"),
          other="refused", says=NOT_WAITING),
    # A's incomplete scan holding pages of B: B's staff see those pages, not the batch's check.
    Write("web-incomplete-held", REVIEW,
          prepare=lambda env: env.batch(incomplete="jam", dossier=env.code(B)),
          send=batch_op("incomplete"), look=lambda env, t: env.batch_state(t),
          check=lambda env, t, answer: checked_all(
              bool(env.pipeline.record(t).incomplete_checked))),
]


# -- the review queue: a dossier --

def dossier_op(op: str, **fixed: Any) -> Callable[[Env, Actor, str, Any], httpx.Response]:
    def send(env: Env, actor: Actor, via: str, target: Any) -> httpx.Response:
        code, other = target if isinstance(target, tuple) else (target, None)
        data = {"op": op, "version": "1", **fixed}
        if other:
            data["new_code" if op in ("split", "recode") else "other"] = other
        return actor.form(f"/review/dossiers/{code}", **data)
    return send


def pages_of(env: Env, code: str) -> list[tuple[str, int, int]]:
    return list(env.versions(code)[-1][2])


def second_version(env: Env, code: str) -> list[tuple[str, int, int]]:
    assert [v for v, *_ in env.versions(code)] == [1, 2]
    return pages_of(env, code)


def two(env: Env, other_agency: str = A) -> tuple[str, str]:
    """A dossier of A and a one-page dossier of `other_agency` to merge into it."""
    return env.dossier(), env.dossier(pages=1, agency=other_agency)


def withdrawn(env: Env, code: str) -> bool:
    return env.versions(code)[-1][1]


DOSSIERS = [
    Write("web-rotate", REVIEW, prepare=lambda env: env.dossier(), send=dossier_op("rotate_right", page="1"),
          look=lambda env, t: env.versions(t),
          check=lambda env, t, answer: checked_all(second_version(env, t)[0][2] == 90)),
    Write("web-move", REVIEW, prepare=lambda env: env.dossier(), send=dossier_op("move", page="1", to="3"),
          look=lambda env, t: env.versions(t),
          check=lambda env, t, answer: checked_all(
              [i for _, i, _ in second_version(env, t)] == [1, 2, 0])),
    Write("web-drop", REVIEW, prepare=lambda env: env.dossier(), send=dossier_op("drop", page="1"),
          look=lambda env, t: env.versions(t),
          check=lambda env, t, answer: checked_all(
              [i for _, i, _ in second_version(env, t)] == [1, 2])),
    Write("web-split", REVIEW, prepare=lambda env: (env.dossier(), env.code()),
          send=dossier_op("split", page="2"),
          look=lambda env, t: (env.versions(t[0]), env.versions(t[1])),
          check=lambda env, t, answer: checked_all(
              [i for _, i, _ in second_version(env, t[0])] == [0],
              [i for _, i, _ in pages_of(env, t[1])] == [1, 2])),
    Write("web-split-to-other", REVIEW, prepare=lambda env: (env.dossier(), env.code(B)),
          send=dossier_op("split", page="2"),
          look=lambda env, t: (env.versions(t[0]), env.versions(t[1])),
          check=lambda env, t, answer: pytest.fail("pages became a dossier of B"),
          own="refused", all="refused"),
    Write("web-merge", REVIEW, prepare=two, send=dossier_op("merge"),
          look=lambda env, t: (env.versions(t[0]), env.versions(t[1])),
          check=lambda env, t, answer: checked_all(
              len(second_version(env, t[0])) == 4, withdrawn(env, t[1]))),
    Write("web-merge-other", REVIEW, prepare=lambda env: two(env, other_agency=B),
          send=dossier_op("merge"),
          look=lambda env, t: (env.versions(t[0]), env.versions(t[1])),
          check=lambda env, t, answer: pytest.fail("a dossier of B was merged"),
          own="refused", all="refused"),
    Write("web-confirm", REVIEW, prepare=lambda env: env.dossier(code_source="ocr"),
          send=dossier_op("confirm"), look=lambda env, t: env.versions(t),
          check=lambda env, t, answer: checked_all(
              len(second_version(env, t)) == 3, env.code_source(t) == "user")),
    Write("web-recode", REVIEW, prepare=lambda env: (env.dossier(), env.code()),
          send=dossier_op("recode"),
          look=lambda env, t: (env.versions(t[0]), env.versions(t[1])),
          check=lambda env, t, answer: checked_all(
              withdrawn(env, t[0]), len(pages_of(env, t[1])) == 3,
              redirected_to(answer, f"/review/dossiers/{t[1]}") != "")),
    Write("web-recode-to-other", REVIEW, prepare=lambda env: (env.dossier(), env.code(B)),
          send=dossier_op("recode"),
          look=lambda env, t: (env.versions(t[0]), env.versions(t[1])),
          check=lambda env, t, answer: pytest.fail("pages became a dossier of B"),
          own="refused", all="refused"),
]


# -- a dossier's page: field corrections and verification --

def components_of(env: Env, code: str) -> list[list[str]]:
    """The component titles of each version of `code`."""
    return [[c["title"] for c in m.components or []] for m in env.pipeline.dossiers.versions(code)]


def verifications(env: Env, code: str) -> int:
    return len(audit_entries(env.pipeline, code, actions=(VERIFY_ACTION,), reads=False))


FIELDS = [
    Write("web-field", ("scanner", "processor"),
          prepare=lambda env: (env.dossier(pages=1), uuid.uuid4().hex),
          send=lambda env, actor, via, t: actor.form(f"/dossiers/{t[0]}/fields/ghi_chu",
                                                     value=t[1], reason="đối chiếu"),
          look=lambda env, t: env.fields(t[0]),
          check=lambda env, t, answer: checked_all(env.fields(t[0])["ghi_chu"] == t[1])),
    Write("web-field-add", ("scanner", "processor"),
          prepare=lambda env: (env.dossier(pages=1), uuid.uuid4().hex),
          send=lambda env, actor, via, t: actor.form(f"/dossiers/{t[0]}/fields", name="so_to",
                                                     value=t[1], reason="đối chiếu"),
          look=lambda env, t: env.fields(t[0]),
          check=lambda env, t, answer: checked_all(env.fields(t[0])["so_to"] == t[1])),
    Write("web-components", ("scanner", "processor"),
          prepare=lambda env: (env.dossier(pages=1), uuid.uuid4().hex),
          send=lambda env, actor, via, t: actor.form(f"/dossiers/{t[0]}/components",
                                                     lines=f"1 | form | {t[1]}"),
          look=lambda env, t: components_of(env, t[0]),
          check=lambda env, t, answer: checked_all(components_of(env, t[0])[-1][0] == t[1])),
    Write("web-verify", ("processor", "auditor"), prepare=lambda env: env.dossier(pages=1),
          send=lambda env, actor, via, t: actor.form(f"/dossiers/{t}/verify"),
          look=lambda env, t: verifications(env, t),
          check=lambda env, t, answer: checked_all(verifications(env, t) == 1)),
]


# -- users (admins) --

PASSWORD, NEW_PASSWORD = "mat-khau-cu-123", "mat-khau-moi-456"


def user_of_a(env: Env, active: bool = True) -> str:
    username, _ = env.live.user("scanner", [A], password=PASSWORD)
    if not active:
        env.live.users.set_active(username, False)
    return username


def user_state(env: Env, username: str) -> tuple[Any, ...]:
    found = env.live.users.get(username)
    if found is None:
        return (None,)
    return (found.active, found.role, found.agencies,
            env.live.users.authenticate(username, NEW_PASSWORD) is not None)


USERS = [
    Write("web-user-create", ("admin",), prepare=lambda env: f"moi{env.n()}-{uuid.uuid4().hex[:4]}",
          send=lambda env, actor, via, t: actor.form(
              "/admin/users", username=t, display_name="Người mới", role="scanner", agencies=A,
              password=PASSWORD),
          look=user_state,
          check=lambda env, t, answer: checked_all(user_state(env, t)[:3] == (True, "scanner", (A,))),
          # The agencies a form names are no secret: another agency's admin is told 403.
          other="refused", refused_status=403),
    Write("web-user-disable", ("admin",), prepare=user_of_a,
          send=lambda env, actor, via, t: actor.form(f"/admin/users/{t}/disable"),
          look=user_state, check=lambda env, t, answer: checked_all(user_state(env, t)[0] is False)),
    Write("web-user-enable", ("admin",), prepare=lambda env: user_of_a(env, active=False),
          send=lambda env, actor, via, t: actor.form(f"/admin/users/{t}/enable"),
          look=user_state, check=lambda env, t, answer: checked_all(user_state(env, t)[0] is True)),
    Write("web-user-password", ("admin",), prepare=user_of_a,
          send=lambda env, actor, via, t: actor.form(f"/admin/users/{t}/reset-password",
                                                     password=NEW_PASSWORD),
          look=user_state, check=lambda env, t, answer: checked_all(user_state(env, t)[3] is True)),
]

WRITES = API + SCAN + BATCHES + DOSSIERS + FIELDS + USERS


def cases() -> Iterator[Any]:
    for write in WRITES:
        for via in write.vias:
            for role in ROLES:
                for scope in SCOPES:
                    name = f"{write.name}-{via}" if write.vias != ("web",) else write.name
                    yield pytest.param(write, via, role, scope, id=f"{name}-{role}-{scope}")


@pytest.mark.parametrize(("write", "via", "role", "scope"), list(cases()))
def test_a_write_needs_the_role_and_the_agency(env: Env, write: Write, via: str, role: str,
                                               scope: str) -> None:
    """Given something of agency A, when a principal of this role and scope writes it, then the
    answer and the stored state are as the scope rule says (see the module's docstring)."""
    outcome = expected(write, role, scope)
    if outcome in ("done", "held"):
        target = write.prepare(env)
    else:  # nothing may change: one target serves every refusal of this write
        if write.name not in env.shared:
            env.shared[write.name] = write.prepare(env)
        target = env.shared[write.name]
    before = write.look(env, target)
    answer = write.send(env, env.actors[role, scope], via, target)
    env.settle()
    assert answer.status_code == status_of(write, outcome), \
        f"{outcome}: {answer.status_code} {answer.text[:300]}"
    if outcome == "done":
        write.check(env, target, answer)
        assert write.look(env, target) != before
        return
    assert write.look(env, target) == before, "nothing may change"
    if outcome == "held":
        assert write.held is not None
        write.held(env, target, answer)
    elif write.says and outcome in ("missing", "refused"):
        assert write.says in answer.text


def test_the_matrix_covers_every_write_route(env: Env) -> None:
    """Every POST, PUT, PATCH and DELETE route of the app is in the matrix (a new one must join)."""
    from fastapi.routing import APIRoute

    writes = sorted({(m, r.path) for r in env.live.app.routes if isinstance(r, APIRoute)
                     for m in r.methods & {"POST", "PUT", "PATCH", "DELETE"}})
    covered = {
        ("POST", "/api/v1/batches"), ("POST", "/api/v1/batches/{batch_id}/retry"),
        ("PUT", "/api/v1/dossiers/{code}/fields/{name}"), ("POST", "/api/v1/dossiers/{code}/result"),
        ("POST", "/api/v1/scanners/{device_id}/scans"), ("POST", "/scan"),
        ("POST", "/review/batches/{batch_id}/{op}"), ("POST", "/review/dossiers/{code}"),
        ("POST", "/dossiers/{code}/fields/{name}"), ("POST", "/dossiers/{code}/fields"),
        ("POST", "/dossiers/{code}/verify"), ("POST", "/admin/users"),
        ("POST", "/api/v1/dossiers/{code}/components"), ("POST", "/dossiers/{code}/components"),
        ("POST", "/admin/users/{username}/disable"), ("POST", "/admin/users/{username}/enable"),
        ("POST", "/admin/users/{username}/reset-password"),
        ("POST", "/login"), ("POST", "/logout"),  # no agency to scope
        # reads sent by POST (a list of codes in the body): scoped like the single-dossier
        # reads, tested in tests/test_bulk.py
        ("POST", "/api/v1/exports"), ("POST", "/api/v1/verifications"),
        ("POST", "/dossiers/export"), ("POST", "/dossiers/verify"),  # tests/test_web_bulk.py
    }
    assert set(writes) == covered
