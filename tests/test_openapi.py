"""The OpenAPI document is the truth about the API (issue 11): no 5xx from any input, every answer
declared, one error body shape. A bounded schemathesis run (all checks) over every operation, and
one test for each input that used to answer 500 or be accepted."""

from __future__ import annotations

import base64
import os
import time
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import StopReason, events

from api.app import create_app
from api.keys import KeyStore
from ingest.page_stages import DetectBlank, ReadBarcodes
from ingest.pipeline import Pipeline
from ingest.review import Review
from ingest.runner import run_file
from ingest.settings import Settings
from tests.synth import ASN_BATCH

ASN = r"^(?P<agency>ASN)(?P<date>)(?P<seq>\d{5})$"
# Examples per operation and phase, and the seed: the same requests every run, about a minute on
# 2 cores. SOHOA_SCHEMATHESIS_EXAMPLES and _SEED explore further (100 examples: about 2 minutes).
EXAMPLES = int(os.environ.get("SOHOA_SCHEMATHESIS_EXAMPLES", "40"))
SEED = int(os.environ.get("SOHOA_SCHEMATHESIS_SEED", "20240511"))
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]  # schemathesis's default


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """An app with one ingested batch (dossiers ASN00123..ASN00126 and ASN00128, which ASN00127
    was renamed to in review: 410), a field corrected, and an admin key of every agency.
    Uploads are stored, not processed."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("openapi") / "data", workers=1,
                        dossier_code_grammar=ASN, scanner_discovery=False)
    pipeline = Pipeline.from_settings(settings)
    pipeline.page_stages = [ReadBarcodes(), DetectBlank()]
    batch = run_file(pipeline, ASN_BATCH)
    pipeline.dossiers.correct("ASN00125", "applicant", "Nguyễn Thị Bích", "test")
    Review(pipeline).recode("ASN00127", "ASN00128", "user:test")

    def store_only(path: Path, **kw: Any) -> dict[str, Any]:
        return pipeline.record(pipeline.receive(path, **kw))

    app = create_app(settings, submit=store_only, resume=pipeline.record)
    client = TestClient(app, raise_server_exceptions=False)
    client.__enter__()
    key = KeyStore(settings.storage.catalog_url).create("admin", ["*"])
    yield app, client, {"Authorization": f"Bearer {key}"}, batch
    client.__exit__(None, None, None)


def cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def get(env, path: str, **params: Any):
    _, client, headers, _ = env
    return client.get(path, params=params, headers=headers)


def problems(r) -> list[tuple[list, str]]:
    """The 422 body's (loc, msg) pairs; it must be the one 422 shape."""
    assert r.status_code == 422, r.text
    body = r.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], list), body
    assert all(set(p) == {"loc", "msg", "type"} for p in body["detail"]), body
    return [(p["loc"], p["msg"]) for p in body["detail"]]


# ---- integers past 64 bits, cursors, dates: 422, never 500 -------------------------------------

def test_an_audit_cursor_past_64_bits_is_422_not_500(env) -> None:
    [(loc, msg)] = problems(get(env, "/api/v1/audit", after="99999999999999999999"))
    assert loc == ["query", "after"] and "less than or equal to" in msg


@pytest.mark.parametrize(("raw", "why"), [
    ("2024-05-01T00:00:00+00:00|ASN00125|0|99999999999999999999", "number is out of range"),
    ("2024-05-01T00:00:00+00:00|ASN00125|0|-1", "number is out of range"),
    ("2024-05-01T00:00:00+00:00|ASN00125|99999999999999999999|1", "kind is not one"),
    ("2024-05-01T00:00:00+00:00|ASN00125|-1|1", "kind is not one"),
    ("2024-05-01T00:00:00+00:00|ASN00125|0|1٣", "number is out of range"),  # a non-ASCII digit
    ("yesterday|ASN00125|0|1", "date-time is not one"),
    ("2024-05-01T00:00:00+00:00|ASN\x0000125|0|1", "dossier code is not one"),
    ("2024-05-01T00:00:00+00:00|" + "A" * 65 + "|0|1", "dossier code is not one"),
    ("2024-05-01T00:00:00+00:00|ASN00125", "parts are not those of one"),
])
def test_an_event_cursor_out_of_range_is_422_bad_cursor(env, raw: str, why: str) -> None:
    [(loc, msg)] = problems(get(env, "/api/v1/events", after=cursor(raw)))
    assert loc == ["query", "after"] and msg == f"bad cursor: its {why}"


@pytest.mark.parametrize("after", ["not base64!", "QUJ", base64.b64encode(b"\xff\xfe").decode()])
def test_a_cursor_that_is_no_base64_of_text_is_422(env, after: str) -> None:
    for path in ("/api/v1/events", "/api/v1/dossiers"):
        assert problems(get(env, path, after=after)) == [
            (["query", "after"], "bad cursor: not base64 of a cursor")]


def test_the_cursors_handed_out_still_page(env) -> None:
    feed = get(env, "/api/v1/events", limit=1).json()
    assert get(env, "/api/v1/events", after=feed["next"]).status_code == 200
    at, code, _, number = base64.urlsafe_b64decode(feed["next"]).decode().split("|")
    old = cursor(f"{at}|{code}|{number}")
    assert get(env, "/api/v1/events", after=old).status_code == 200  # at|code|number, as before
    listing = get(env, "/api/v1/dossiers", limit=1).json()
    assert get(env, "/api/v1/dossiers", after=listing["next"]).json()["items"]


@pytest.mark.parametrize("code", ["ASN\x0000125", "A" * 65, "ASN\n1"])
def test_a_dossier_cursor_of_no_code_is_422(env, code: str) -> None:
    assert problems(get(env, "/api/v1/dossiers", after=cursor(code))) == [
        (["query", "after"], "bad cursor: its dossier code is not one")]


@pytest.mark.parametrize("value", ["0.5", "1700000000", "2024-05", "01/05/2024", "2024-05-01T8"])
def test_a_date_is_iso_8601_not_a_number(env, value: str) -> None:
    [(loc, msg)] = problems(get(env, "/api/v1/dossiers", updated_to=value))
    assert loc == ["query", "updated_to"] and msg.startswith("not an ISO 8601 date")


def test_an_offset_date_time_means_that_instant(env) -> None:
    items = get(env, "/api/v1/dossiers").json()["items"]
    updated = datetime.fromisoformat(items[0]["updated_at"])
    updated = updated.replace(tzinfo=UTC) if updated.tzinfo is None else updated  # SQLite's
    hanoi = timezone(timedelta(hours=7))
    around = {"updated_from": (updated - timedelta(hours=1)).astimezone(hanoi).isoformat(),
              "updated_to": (updated + timedelta(hours=1)).astimezone(hanoi).isoformat()}
    assert len(get(env, "/api/v1/dossiers", **around).json()["items"]) == len(items)
    for day in (updated.date().isoformat(), f"{updated.date().isoformat()}T00:00:00Z"):
        assert get(env, "/api/v1/dossiers", updated_from=day).status_code == 200


# ---- control characters and lengths ------------------------------------------------------------

@pytest.mark.parametrize("param", ["q", "agency", "procedure", "after"])
@pytest.mark.parametrize("char", ["\x00", "\x1b", "\n", "\x7f", "\x85"])
def test_a_control_character_in_a_search_is_422_and_says_so(env, param: str, char: str) -> None:
    [(loc, msg)] = problems(get(env, "/api/v1/dossiers", **{param: f"ASN{char}1"}))
    assert loc == ["query", param] and msg.startswith("must not contain control characters")


def test_a_nul_no_longer_matches_every_dossier(env) -> None:
    assert get(env, "/api/v1/dossiers", q="\x00").status_code == 422
    assert get(env, "/api/v1/dossiers", q="ASN00125").json()["items"]


@pytest.mark.parametrize(("param", "longest"), [("q", 200), ("agency", 64), ("procedure", 200)])
def test_search_parameters_are_bounded(env, param: str, longest: int) -> None:
    assert get(env, "/api/v1/dossiers", **{param: "A" * longest}).status_code == 200
    [(loc, msg)] = problems(get(env, "/api/v1/dossiers", **{param: "A" * (longest + 1)}))
    assert loc == ["query", param] and msg == f"String should have at most {longest} characters"


@pytest.mark.parametrize("path", ["/api/v1/dossiers/{}", "/api/v1/dossiers/{}/pdf",
                                  "/api/v1/dossiers/{}/pages/1", "/api/v1/dossiers/{}/verify"])
def test_an_oversized_or_control_dossier_code_is_422(env, path: str) -> None:
    assert problems(get(env, path.format("A" * 3000))) == [
        (["path", "code"], "String should have at most 64 characters")]
    [(loc, msg)] = problems(get(env, path.format("%00")))
    assert loc == ["path", "code"] and msg.startswith("must not contain control characters")


def test_an_oversized_scan_or_scanner_id_is_422(env) -> None:
    _, client, headers, _ = env
    assert problems(get(env, "/api/v1/scans/" + "x" * 3000)) == [
        (["path", "scan_id"], "String should have at most 64 characters")]
    r = client.post("/api/v1/scanners/" + "x" * 300 + "/scans", json={}, headers=headers)
    assert problems(r) == [(["path", "device_id"], "String should have at most 200 characters")]


def test_an_oversized_batch_id_is_404_like_any_other_that_is_none(env) -> None:
    r = get(env, "/api/v1/batches/" + "b" * 3000)
    assert (r.status_code, r.json()) == (404, {"detail": "no such batch"})


def test_a_correction_refuses_control_characters_but_not_line_breaks_in_its_reason(env) -> None:
    _, client, headers, _ = env
    url = "/api/v1/dossiers/ASN00126/fields/applicant"
    [(loc, _)] = problems(client.put(url, json={"value": "An\x00"}, headers=headers))
    assert loc == ["body", "value"]
    assert problems(client.put(url, json={"value": "An", "reason": "x\x00"}, headers=headers))
    r = client.put(url, json={"value": "Trần Văn An", "reason": "giấy tờ\r\ntrang 2"}, headers=headers)
    assert r.status_code == 200


def test_an_over_long_or_unprintable_key_is_401(env) -> None:
    _, client, _, _ = env
    for token in ("sohoa_" + "x" * 300, "sohoa_a\x01b_c"):
        r = client.get("/api/v1/dossiers", headers={"X-API-Key": token})
        assert (r.status_code, r.json()) == (401, {"detail": "a valid API key is required"})


# ---- uploads: what is no multipart body is 4xx --------------------------------------------------

def post(env, body: bytes, content_type: str):
    _, client, headers, _ = env
    return client.post("/api/v1/batches", content=body,
                       headers={**headers, "Content-Type": content_type})


def multipart(*parts: tuple[str, bytes]) -> bytes:
    return b"".join(b"--B\r\nContent-Disposition: form-data; " + head.encode("latin-1") + b"\r\n\r\n"
                    + data + b"\r\n" for head, data in parts) + b"--B--\r\n"


@pytest.mark.parametrize(("body", "content_type", "status"), [
    (b"{}", "application/json", 422),
    (b"x", "multipart/form-data", 422),  # no boundary
    (b"garbage", "multipart/form-data; boundary=B", 400),
    (b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.pdf\"\r\n\r\nab",
     "multipart/form-data; boundary=B", 400),  # cut short
    (multipart(('name="dossier"', b"ASN00125")), "multipart/form-data; boundary=B", 422),
    (multipart(('name="file"; filename="a.pdf"', b"%PDF"), ('name="dossier"', b"ASN\x0000125")),
     "multipart/form-data; boundary=B", 422),
    (multipart(('name="file"; filename="a.pdf"', b"%PDF"), ('name="file"; filename="b.pdf"', b"%")),
     "multipart/form-data; boundary=B", 422),
    (multipart(('name="file"; filename="a.pdf"', b"%PDF"), ('name="dossier"', b"D" * 5000)),
     "multipart/form-data; boundary=B", 422),
    (b"x", "multipart/form-data; boundary=" + "B" * 5000, 400),
])
def test_a_body_that_is_no_upload_is_4xx(env, body: bytes, content_type: str, status: int) -> None:
    r = post(env, body, content_type)
    assert r.status_code == status, r.text
    if status == 422:
        problems(r)
    else:
        assert isinstance(r.json()["detail"], str)


def test_a_file_name_with_control_characters_and_folders_is_kept_clean(env) -> None:
    r = post(env, multipart(('name="file"; filename="..\\\\a\x00b\x1b/c\x7fd.p\x00df"', b"%PDF-1")),
             "multipart/form-data; boundary=B")
    assert r.status_code == 202, r.text
    assert get(env, f"/api/v1/batches/{r.json()['batch_id']}").json()["file"] == "cd.pdf"


def test_a_dossier_that_is_no_code_is_422_in_the_one_shape(env) -> None:
    r = post(env, multipart(('name="file"; filename="a.pdf"', b"%PDF-2"), ('name="dossier"', b"nope")),
             "multipart/form-data; boundary=B")
    assert problems(r) == [(["body", "dossier"], "'nope' is not a dossier code")]


# ---- one error shape, every answer declared -----------------------------------------------------

def test_errors_other_than_422_and_410_carry_a_message(env) -> None:
    _, client, headers, _ = env
    assert get(env, "/api/v1/dossiers/ASN09999").json() == {"detail": "no such dossier"}
    r = client.get("/api/v1/dossiers")
    assert (r.status_code, r.json(), r.headers["www-authenticate"]) == (
        401, {"detail": "a valid API key is required"}, "Bearer")
    r = client.delete("/api/v1/dossiers/ASN00125", headers=headers)
    assert (r.status_code, r.json()) == (405, {"detail": "Method Not Allowed"})
    assert get(env, "/api/v1/no-such-route").json() == {"detail": "Not Found"}


def test_a_withdrawn_code_is_410_with_where_its_pages_went(env) -> None:
    for path in ("", "/pdf", "/pages/1", "/verify"):
        r = get(env, f"/api/v1/dossiers/ASN00127{path}")
        assert r.status_code == 410
        detail = r.json()["detail"]
        assert (detail["dossier_id"], detail["renamed_to"]) == ("ASN00127", "ASN00128")
        assert detail["message"] == "dossier ASN00127 was renamed to ASN00128"


def test_web_pages_keep_their_own_error_pages(env) -> None:
    _, client, _, _ = env
    r = client.get("/no-such-page")
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize(("range_", "status"), [("bytes=0-9", 206), ("bytes=5-2", 416),
                                                ("pages=1", 200), ("bytes=0-1,5-6", 200),
                                                ("bytes=999999999-", 416)])
def test_a_pdf_range_is_answered_as_declared(env, range_: str, status: int) -> None:
    _, client, headers, _ = env
    r = client.get("/api/v1/dossiers/ASN00125/pdf", headers={**headers, "Range": range_})
    assert r.status_code == status
    if status == 416:
        assert r.json() == {"detail": "range not satisfiable"}
        assert r.headers["content-range"].startswith("bytes */")
    else:
        assert r.headers["content-type"] == "application/pdf"


def test_every_operation_declares_its_errors_from_the_one_table(env) -> None:
    app, _, _, _ = env
    doc = app.openapi()
    bodies = {"Error", "Invalid", "Withdrawn"}
    assert {"HTTPBearer", "APIKeyHeader"} == set(doc["components"]["securitySchemes"])
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            answers = operation["responses"]
            assert {"401", "403", "422"} <= set(answers), (method, path)
            assert operation["security"], (method, path)
            for status, answer in answers.items():
                if int(status) >= 400:
                    ref = answer["content"]["application/json"]["schema"]["$ref"]
                    assert ref.rsplit("/", 1)[1] in bodies, (method, path, status)
            if "{code}" in path:
                assert {"404", "410"} <= set(answers), (method, path)


# ---- schemathesis ------------------------------------------------------------------------------

def run_schemathesis(app, headers: dict[str, str], batch: dict[str, Any],
                     feed_next: str, page_next: str) -> dict[str, Any]:
    """All of schemathesis's phases (examples, coverage, fuzzing, stateful) and checks, as its CLI
    runs them, in process against the ASGI app. Returns what it found."""
    config = SchemathesisConfig.from_dict({
        "seed": SEED,
        "suppress-health-check": ["all"],
        "cache": {"enabled": False},
        "headers": headers,
        "generation": {"max-examples": EXAMPLES, "database": "none"},
        # Real dossiers, batches and cursors now and then, so that answers other than 404 and
        # 422 (the PDF, a page, a correction, a feed page) are checked too.
        "dictionaries": {"codes": {"values": ["ASN00125", "asn00128", "ASN00127"]},
                         "batches": {"values": [batch.batch_id]},
                         "cursors": {"values": [feed_next, page_next]}},
        "parameters": {"path.code": {"dictionary": "codes", "probability": 0.5},
                       "path.batch_id": {"dictionary": "batches", "probability": 0.5},
                       "query.after": {"dictionary": "cursors", "probability": 0.3}},
        # Besides schemathesis's own: 410 for a withdrawn code (it is well formed), and what no
        # schema can say: a cursor is one the API handed out, a dossier code one the office's
        # grammar accepts (both documented), components whose start pages increase within the
        # dossier's pages, else 422 though well formed.
        "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "410"]}},
        "operations": [{"include-path-regex":
                        r"^/api/v1/(events|dossiers|batches|dossiers/\{code\}/components)$",
                        "checks": {"positive_data_acceptance": {"expected-statuses": [
                            *ACCEPTED, "410", "422"]}}}],
    })
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app, config=config)
    found: dict[str, Any] = {"failures": [], "errors": [], "statuses": Counter(), "requests": 0,
                             "phases": set()}
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            found["phases"].add(event.phase.value)
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.failure_info is not None:
                        found["failures"].append(
                            f"{event.label} ({event.phase.value}): {check.name}: "
                            f"{check.failure_info.failure.title}\n{check.failure_info.failure.message}"
                            f"\n{check.failure_info.code_sample}")
            for interaction in event.recorder.interactions.values():
                if interaction.response is not None:
                    found["requests"] += 1
                    found["statuses"][interaction.response.status_code] += 1
        elif isinstance(event, events.NonFatalError):
            found["errors"].append(f"{event.label}: {event.info.format()}")
        elif isinstance(event, events.FatalError):
            raise event.exception
        elif isinstance(event, events.EngineFinished):
            found["stop"] = event.stop_reason
    return found


def test_schemathesis_finds_no_5xx_and_no_mismatch(env, tmp_path: Path) -> None:
    app, client, headers, batch = env
    feed = client.get("/api/v1/events", params={"limit": 1}, headers=headers).json()
    page = client.get("/api/v1/dossiers", params={"limit": 1}, headers=headers).json()
    started = time.monotonic()
    set_hypothesis_home_dir(tmp_path / "hypothesis")  # its caches, not in the checkout
    try:
        found = run_schemathesis(app, headers, batch, feed["next"], page["next"])
    finally:
        set_hypothesis_home_dir(None)
    took = time.monotonic() - started
    print(f"schemathesis: {found['requests']} requests in {took:.0f} s, phases "
          f"{sorted(found['phases'])}, statuses {dict(sorted(found['statuses'].items()))}")
    assert found["stop"] == StopReason.COMPLETED
    assert not found["failures"], "\n\n".join(found["failures"][:20])
    assert not found["errors"], "\n\n".join(found["errors"][:20])
    assert not [s for s in found["statuses"] if s >= 500]
    assert {200, 202, 404, 410, 422} <= set(found["statuses"])  # it reached past the checks
