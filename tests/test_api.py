"""The REST API over real HTTP semantics (FastAPI's test client): every route with each role, with a
key of another agency, without a key, and with malformed input."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.keys import KeyStore
from ingest.page_stages import DetectBlank, ReadBarcodes
from ingest.pipeline import Pipeline
from ingest.runner import run_file
from ingest.settings import Settings
from tests.synth import ASN_BATCH

ASN = r"^(?P<agency>ASN)(?P<date>)(?P<seq>\d{5})$"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    settings = Settings(data_dir=tmp_path_factory.mktemp("api") / "data", workers=1,
                        dossier_code_grammar=ASN, scanner_discovery=False)
    pipeline = Pipeline.from_settings(settings)
    pipeline.page_stages = [ReadBarcodes(), DetectBlank()]

    def submit_now(path: Path, **kw: object) -> dict:  # the local runner instead of the queue
        return run_file(pipeline, path, **kw)  # type: ignore[arg-type]

    client = TestClient(create_app(settings, submit=submit_now))
    client.__enter__()  # runs the app's lifespan: its audit writer is flushed and stopped at the end
    store = KeyStore(settings.storage.catalog_url)
    keys = {role: store.create(role, ["ASN"]) for role in ("scanner", "processor", "auditor",
                                                           "admin")}
    keys["other_agency"] = store.create("processor", ["H40"])
    keys["other_auditor"] = store.create("auditor", ["H40"])
    keys["other_scanner"] = store.create("scanner", ["H40"])
    sample = ASN_BATCH
    with sample.open("rb") as f:
        upload = client.post("/api/v1/batches", files={"file": ("asn.pdf", f, "application/pdf")},
                             headers=auth(keys["scanner"]))
    yield client, keys, upload, sample
    client.__exit__(None, None, None)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_upload_answers_202_with_the_batch_id(env) -> None:
    _, _, upload, sample = env
    assert upload.status_code == 202
    digest = hashlib.sha256(sample.read_bytes()).hexdigest()
    assert upload.json()["batch_id"] == "b" + hashlib.sha256(f"ASN:{digest}".encode()).hexdigest()[:24]


def test_batch_status_shows_page_progress(env) -> None:
    client, keys, upload, _ = env
    body = client.get(f"/api/v1/batches/{upload.json()['batch_id']}",
                      headers=auth(keys["scanner"])).json()
    assert (body["status"], body["pages"], body["pages_done"]) == ("done", 10, 10)


@pytest.mark.parametrize("role", ["processor", "auditor", "admin"])
def test_dossier_by_code_with_fields_versions_and_checksums(env, role: str) -> None:
    client, keys, _, _ = env
    r = client.get("/api/v1/dossiers/ASN00125", headers=auth(keys[role]))
    assert r.status_code == 200
    body = r.json()
    assert (body["dossier_id"], body["pages"], body["version"]) == ("ASN00125", [3], 1)
    copies = {c["object"] for c in body["components"]}  # each component's own PDF/A
    assert set(body["checksums"]) == {"dossier.pdf", "text.json", "fields.json", *copies}


def test_pdf_is_streamed_with_etag_and_range(env) -> None:
    client, keys, _, _ = env
    h = auth(keys["processor"])
    full = client.get("/api/v1/dossiers/ASN00125/pdf", headers=h)
    assert full.status_code == 200 and full.content.startswith(b"%PDF")
    assert full.headers["etag"] == f'"{hashlib.sha256(full.content).hexdigest()}"'
    part = client.get("/api/v1/dossiers/ASN00125/pdf", headers={**h, "Range": "bytes=0-99"})
    assert part.status_code == 206 and part.content == full.content[:100]
    again = client.get("/api/v1/dossiers/ASN00125/pdf",
                       headers={**h, "If-None-Match": full.headers["etag"]})
    assert again.status_code == 304


@pytest.mark.parametrize("path", ["/api/v1/dossiers/ASN00125", "/api/v1/dossiers/ASN00125/pdf"])
def test_another_agency_gets_404_like_a_missing_dossier(env, path: str) -> None:
    client, keys, _, _ = env
    theirs = client.get(path, headers=auth(keys["other_agency"]))
    missing = client.get(path.replace("ASN00125", "ASN09999"), headers=auth(keys["processor"]))
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json() == missing.json()


def test_another_agency_cannot_see_the_batch(env) -> None:
    client, keys, upload, _ = env
    r = client.get(f"/api/v1/batches/{upload.json()['batch_id']}",
                   headers=auth(keys["other_agency"]))
    assert r.status_code in (403, 404)


@pytest.mark.parametrize(("method", "path", "role"), [
    ("get", "/api/v1/dossiers/ASN00125", "scanner"),
    ("get", "/api/v1/dossiers/ASN00125/pdf", "scanner"),
    ("get", "/api/v1/batches/b0", "processor"),
    ("get", "/api/v1/batches/b0", "auditor"),
    ("post", "/api/v1/batches", "processor"),
    ("post", "/api/v1/batches", "auditor"),
])
def test_wrong_role_is_forbidden(env, method: str, path: str, role: str) -> None:
    client, keys, _, _ = env
    assert getattr(client, method)(path, headers=auth(keys[role])).status_code == 403


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer sohoa_nope_nope"},
                                     {"Authorization": "Basic abc"}, {"X-API-Key": "garbage"}])
def test_missing_or_bad_key_is_401(env, headers: dict[str, str]) -> None:
    client, _, _, _ = env
    for path in ("/api/v1/dossiers/ASN00125", "/api/v1/batches/b0"):
        assert client.get(path, headers=headers).status_code == 401


def test_malformed_upload_is_refused(env) -> None:
    client, keys, _, _ = env
    h = auth(keys["scanner"])
    assert client.post("/api/v1/batches", headers=h).status_code == 422
    r = client.post("/api/v1/batches", headers=h, files={"file": ("x.pdf", b"%PDF-1.4")},
                    data={"dossier": "not a code"})
    assert r.status_code == 422


def test_oversized_upload_is_refused_with_413(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", max_upload_mb=1)
    app = create_app(settings, submit=lambda *a, **k: {})
    key = KeyStore(settings.storage.catalog_url).create("scanner", ["H40"])
    with TestClient(app) as client:
        r = client.post("/api/v1/batches", headers=auth(key),
                        files={"file": ("big.pdf", b"%PDF-" + b"0" * (2 * 1024 * 1024))})
    assert r.status_code == 413
    assert list((tmp_path / "data" / "incoming").iterdir()) == []


def test_uploaded_junk_is_kept_and_fails_its_batch(env) -> None:
    client, keys, _, _ = env
    r = client.post("/api/v1/batches", headers=auth(keys["scanner"]),
                    files={"file": ("junk.pdf", b"this is not a scan")})
    assert r.status_code == 202 and r.json()["status"] == "failed"
    assert r.json()["error"].startswith("not_a_document")


def codes(client: TestClient, key: str, **params: object) -> list[str]:
    r = client.get("/api/v1/dossiers", headers=auth(key), params=params)
    assert r.status_code == 200, r.text
    return [d["dossier_id"] for d in r.json()["items"]]


def test_listing_is_scoped_to_the_key_agencies(env) -> None:
    client, keys, _, _ = env
    assert codes(client, keys["auditor"]) == [f"ASN0012{i}" for i in range(3, 8)]
    assert codes(client, keys["other_agency"]) == []
    assert codes(client, keys["other_agency"], agency="ASN") == []


def test_listing_is_cursor_paginated(env) -> None:
    client, keys, _, _ = env
    h = auth(keys["processor"])
    first = client.get("/api/v1/dossiers", headers=h, params={"limit": 2}).json()
    second = client.get("/api/v1/dossiers", headers=h,
                        params={"limit": 2, "after": first["next"]}).json()
    assert [d["dossier_id"] for d in first["items"] + second["items"]] == \
        ["ASN00123", "ASN00124", "ASN00125", "ASN00126"]


def test_search_finds_codes(env) -> None:
    client, keys, _, _ = env
    assert codes(client, keys["processor"], q="asn00126") == ["ASN00126"]


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 1000}, {"after": "%%%"},
                                    {"updated_from": "yesterday"}])
def test_malformed_listing_parameters_are_422(env, params: dict) -> None:
    client, keys, _, _ = env
    assert client.get("/api/v1/dossiers", headers=auth(keys["processor"]),
                      params=params).status_code == 422


def test_listing_needs_a_reading_role(env) -> None:
    client, keys, _, _ = env
    assert client.get("/api/v1/dossiers", headers=auth(keys["scanner"])).status_code == 403


def test_event_feed_tells_of_new_dossiers_and_resumes_from_its_cursor(env) -> None:
    client, keys, _, _ = env
    h = auth(keys["processor"])
    first = client.get("/api/v1/events", headers=h, params={"limit": 3}).json()
    # a batch's dossiers reach the catalog together (one place in the feed), then by code,
    # whichever of them was written first
    assert [(e["kind"], e["dossier_id"]) for e in first["items"]] == [
        ("created", "ASN00123"), ("created", "ASN00124"), ("created", "ASN00125")]
    rest = client.get("/api/v1/events", headers=h, params={"after": first["next"]}).json()
    assert [e["dossier_id"] for e in rest["items"]] == ["ASN00126", "ASN00127"]
    idle = client.get("/api/v1/events", headers=h, params={"after": rest["next"]}).json()
    assert idle == {"items": [], "next": rest["next"]}  # poll again later with the same cursor


def test_event_feed_is_scoped_and_validated(env) -> None:
    client, keys, _, _ = env
    assert client.get("/api/v1/events", headers=auth(keys["other_agency"])).json()["items"] == []
    assert client.get("/api/v1/events", headers=auth(keys["scanner"])).status_code == 403
    assert client.get("/api/v1/events", headers=auth(keys["processor"]),
                      params={"after": "bm90IGEgY3Vyc29y"}).status_code == 422


def test_reads_are_audited_with_who_and_from_where(env) -> None:
    client, keys, _, _ = env
    client.get("/api/v1/dossiers/ASN00126", headers=auth(keys["processor"]))
    trail = client.get("/api/v1/audit", headers=auth(keys["auditor"]),
                       params={"limit": 500}).json()["items"]
    read = [e for e in trail if e["action"] == "dossier.read" and e["target"] == "ASN00126"][-1]
    processor_id = keys["processor"].split("_")[1]
    assert (read["actor"], read["remote"], read["agency"]) == (processor_id, "testclient", "ASN")
    assert any(e["action"] == "batch.upload" for e in trail)
    assert any(e["action"] == "dossier.version.create" for e in trail)


def test_audit_trail_is_for_auditors_of_the_agency(env) -> None:
    client, keys, _, _ = env
    assert client.get("/api/v1/audit", headers=auth(keys["processor"])).status_code == 403
    theirs = client.get("/api/v1/audit", headers=auth(keys["other_auditor"])).json()["items"]
    assert all(e["agency"] == "H40" for e in theirs)  # their own keys' searches, nothing of ASN
    assert not any("ASN" in e["target"] for e in theirs)


def test_page_images_and_thumbnails(env) -> None:
    import io

    from PIL import Image

    client, keys, _, _ = env
    h = auth(keys["auditor"])
    full = client.get("/api/v1/dossiers/ASN00125/pages/1", headers=h)
    thumb = client.get("/api/v1/dossiers/ASN00125/pages/1", headers=h, params={"size": 200})
    assert full.headers["content-type"] == thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(full.content)).size == (2481, 3508)
    assert max(Image.open(io.BytesIO(thumb.content)).size) == 200
    assert client.get("/api/v1/dossiers/ASN00125/pages/2", headers=h).status_code == 404
    assert client.get("/api/v1/dossiers/ASN00125/pages/0", headers=h).status_code == 422
    assert client.get("/api/v1/dossiers/ASN00125/pages/1",
                      headers=auth(keys["other_agency"])).status_code == 404


ROUTES = [  # (method, path, roles allowed besides admin)
    ("post", "/api/v1/batches", {"scanner"}),
    ("get", "/api/v1/batches/{batch}", {"scanner"}),
    ("get", "/api/v1/dossiers", {"processor", "auditor"}),
    ("get", "/api/v1/dossiers/ASN00125", {"processor", "auditor"}),
    ("get", "/api/v1/dossiers/ASN00125/pdf", {"processor", "auditor"}),
    ("get", "/api/v1/dossiers/ASN00125/pages/1", {"processor", "auditor"}),
    ("get", "/api/v1/events", {"processor", "auditor"}),
    ("get", "/api/v1/audit", {"auditor"}),
    ("put", "/api/v1/dossiers/ASN00125/fields/note", {"scanner", "processor"}),
    ("get", "/api/v1/scanners", {"scanner"}),
    ("get", "/api/v1/scans", {"scanner"}),
]


def call(client: TestClient, method: str, path: str, key: str, batch: str):
    path = path.format(batch=batch)
    if method == "post":
        return client.post(path, headers=auth(key), files={"file": ("n.pdf", b"not a scan")})
    if method == "put":
        return client.put(path, headers=auth(key), json={"value": "checked"})
    return client.get(path, headers=auth(key))


@pytest.mark.parametrize(("method", "path", "allowed"), ROUTES)
@pytest.mark.parametrize("role", ["scanner", "processor", "auditor", "admin"])
def test_every_route_with_every_role(env, method: str, path: str, allowed: set[str],
                                     role: str) -> None:
    client, keys, upload, _ = env
    r = call(client, method, path, keys[role], upload.json()["batch_id"])
    if role == "admin" or role in allowed:
        assert r.status_code in (200, 202), r.text
    else:
        assert r.status_code == 403


@pytest.mark.parametrize(("method", "path", "allowed"), ROUTES)
def test_every_route_with_a_key_of_another_agency(env, method: str, path: str,
                                                  allowed: set[str]) -> None:
    client, keys, upload, _ = env
    other = keys["other_scanner"] if "scanner" in allowed else (
        keys["other_auditor"] if path.endswith("audit") else keys["other_agency"])
    r = call(client, method, path, other, upload.json()["batch_id"])
    if method == "post":  # their own upload, recorded under their agency, theirs to follow
        assert r.status_code == 202
        status = client.get(f"/api/v1/batches/{r.json()['batch_id']}", headers=auth(other))
        assert status.status_code == 200
    elif "{batch}" in path or "ASN00125" in path:
        assert r.status_code == 404
    else:
        assert "ASN" not in r.text  # lists, feed and trail show nothing of agency ASN


def test_a_corrected_field_is_served_kept_audited_and_in_the_feed(env) -> None:
    """Given a processor correcting ASN00124's applicant name, then the dossier shows the new
    value as corrected, the feed has a field_corrected event after the dossier's creation, and the
    audit trail has who did it and why."""
    client, keys, _, _ = env
    h = auth(keys["processor"])
    answer = client.put("/api/v1/dossiers/ASN00124/fields/applicant_name", headers=h,
                        json={"value": "Nguyễn Thị Bích", "reason": "tên viết sai"})
    assert answer.status_code == 200, answer.text
    field = client.get("/api/v1/dossiers/ASN00124", headers=h).json()["fields"]["applicant_name"]
    assert (field["value"], field["source"], field["confidence"]) == ("Nguyễn Thị Bích", "corrected", 1.0)
    feed, after = [], None
    while True:
        page = client.get("/api/v1/events", headers=h, params={"after": after} if after else {}).json()
        if not page["items"]:
            break
        feed += page["items"]
        after = page["next"]
    mine = [(e["kind"], e.get("field")) for e in feed if e["dossier_id"] == "ASN00124"]
    assert mine == [("created", None), ("field_corrected", "applicant_name")]
    found = client.get("/api/v1/dossiers", headers=h, params={"q": "nguyen thi bich"}).json()
    assert [d["dossier_id"] for d in found["items"]] == ["ASN00124"]
    trail = client.get("/api/v1/audit", headers=auth(keys["auditor"])).json()["items"]
    entry = [e for e in trail if e["action"] == "dossier.field.correct"][-1]
    assert entry["detail"]["reason"] == "tên viết sai" and entry["detail"]["value"] == "Nguyễn Thị Bích"


@pytest.mark.parametrize(("name", "body"), [("Bad-Name", {"value": "x"}), ("note", {"value": ""}),
                                            ("note", {"value": "x" * 2001}), ("note", {})])
def test_malformed_corrections_are_422(env, name: str, body: dict) -> None:
    client, keys, _, _ = env
    answer = client.put(f"/api/v1/dossiers/ASN00125/fields/{name}", headers=auth(keys["processor"]),
                        json=body)
    assert answer.status_code == 422


# ---- writes are scoped like reads (issue 11) ----------------------------------------------------


def test_an_upload_for_another_agencys_dossier_is_404_and_stores_nothing(env) -> None:
    """Given a scanner key of H40, when it uploads a page for dossier ASN00123 (agency ASN), then
    the answer is 404 as for reading that dossier, and no batch is made."""
    client, keys, _, _ = env
    before = client.get("/api/v1/dossiers/ASN00123", headers=auth(keys["processor"])).json()
    r = client.post("/api/v1/batches", data={"dossier": "ASN00123"},
                    files={"file": ("forged.pdf", ASN_BATCH.read_bytes() + b"\n% forged\n",
                                    "application/pdf")},
                    headers=auth(keys["other_scanner"]))
    assert r.status_code == 404 and r.json()["detail"] == "no such dossier"
    after = client.get("/api/v1/dossiers/ASN00123", headers=auth(keys["processor"])).json()
    assert after["version"] == before["version"]


def test_barcodes_of_another_agency_make_no_version_for_the_uploader(env) -> None:
    """Given a scanner key of H40, when it uploads a batch whose barcodes carry codes of agency
    ASN, then no ASN dossier gets a version: the pages wait in review as `other_agency`."""
    client, keys, _, _ = env
    before = {c: client.get(f"/api/v1/dossiers/{c}", headers=auth(keys["processor"])).json()
              ["version"] for c in ("ASN00123", "ASN00127")}
    r = client.post("/api/v1/batches",
                    files={"file": ("theirs.pdf", ASN_BATCH.read_bytes() + b"\n% H40\n",
                                    "application/pdf")},
                    headers=auth(keys["other_scanner"]))
    assert r.status_code == 202
    body = client.get(f"/api/v1/batches/{r.json()['batch_id']}",
                      headers=auth(keys["other_scanner"])).json()
    assert (body["status"], body["dossiers"]) == ("needs_review", [])
    assert [(r["code"], r["reason"], r["agency"]) for r in body["review"]] == [
        (c, "other_agency", "ASN") for c in
        ("ASN00123", "ASN00124", "ASN00125", "ASN00126", "ASN00127")]
    after = {c: client.get(f"/api/v1/dossiers/{c}", headers=auth(keys["processor"])).json()
             ["version"] for c in ("ASN00123", "ASN00127")}
    assert after == before


def test_the_value_a_field_already_has_confirms_it(env) -> None:
    """Given a field as read, when a processor puts the same value, then it is stored as a
    confirmation: the field reads `confirmed`, at full confidence, its value unchanged."""
    client, keys, _, _ = env
    h = auth(keys["processor"])
    before = client.get("/api/v1/dossiers/ASN00125", headers=h).json()["fields"]["dossier_id"]
    r = client.put("/api/v1/dossiers/ASN00125/fields/dossier_id", headers=h,
                   json={"value": before["value"], "reason": "đã đối chiếu"})
    assert r.status_code == 200 and r.json()["confirmed"] is True
    after = client.get("/api/v1/dossiers/ASN00125", headers=h).json()["fields"]["dossier_id"]
    assert (after["value"], after["source"], after["confidence"]) == \
        (before["value"], "confirmed", 1.0)


def test_an_upload_giving_its_dossier_twice_is_refused(env) -> None:
    """Given a multipart upload with two `dossier` fields, then 422 naming the field: which code
    was meant cannot be told, and nothing is stored."""
    client, keys, _, _ = env
    r = client.post("/api/v1/batches", headers=auth(keys["scanner"]),
                    data={"dossier": ["ASN00125", "ASN00126"]},
                    files={"file": ("x.pdf", b"%PDF-1.4\n", "application/pdf")})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "dossier"]


def test_an_upload_with_fields_of_its_own_is_taken(env) -> None:
    """Given a multipart upload that also carries fields sohoa does not read (an empty name,
    one given twice, fifty of them), then they are skipped unread, as the body's schema allows,
    and the file is stored as a batch."""
    client, keys, _, _ = env
    r = client.post("/api/v1/batches", headers=auth(keys["scanner"]),
                    data={"": "{}", "COM1": ["[]", "[1]"],
                          **{f"note{i}": "x" for i in range(50)}},
                    files={"file": ("x.pdf", b"%PDF-1.4\n", "application/pdf")})
    assert r.status_code == 202 and r.json()["batch_id"].startswith("b")
