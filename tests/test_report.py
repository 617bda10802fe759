"""The digitization report (storage/reports.py): its figures against a known set of dossiers, on
SQLite and on PostgreSQL; the CLI's JSON and CSV; the API's scope, roles and malformed dates; the
dossier list behind each figure."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.keys import KeyStore
from ingest.pipeline import Pipeline
from ingest.results import ResultWork
from ingest.settings import Settings
from ingest.stages import DossierWork
from ingest.versions import PageRef
from storage import layout, reports
from tests.databases import fresh_postgres

ASN = r"^(?P<agency>ASN|BSN)(?P<date>)(?P<seq>\d{5})$"
BATCH = "b0123456789abcdef01234567"



class JoinPages:
    """Stands in for fields and PDF/A: the dossier's PDF is its pages."""

    name = "join"

    def __call__(self, work: DossierWork | ResultWork) -> None:
        work.pdf = b"".join(work.page_pdfs)


class ReceiptDay:
    """Stands in for the receipt's field `received_at`: the day the test gives each code."""

    name = "received"

    def __init__(self, days: dict[str, str]) -> None:
        self.days = days

    def __call__(self, work: DossierWork) -> None:
        from ocr.fields import Field

        work.fields["received_at"] = Field(self.days[work.code], work.pages[0], 0.9, "ocr")


class Marks:
    """The manifest keys the component and signing stages will add, as the test says."""

    name = "marks"

    def __init__(self, complete: set[str], signed: set[str]) -> None:
        self.complete, self.signed = complete, signed

    def __call__(self, work: DossierWork) -> None:
        if work.code in self.complete:
            work.manifest["complete_by_components"] = True
        work.manifest["signature"] = {"status": "signed" if work.code in self.signed
                                      else "unsigned"}


# The known set: code -> (receipt time, complete by components, has a result, signed).
# ASN00009 is received 2026-11-30 23:30 UTC, i.e. 2026-12-01 in Vietnam: a December dossier.
KNOWN = {
    "ASN00001": ("2026-11-03T09:00:00+07:00", True, True, True),
    "ASN00002": ("2026-11-10T14:00:00+07:00", True, False, False),
    "ASN00003": ("2026-11-20T08:00:00+07:00", False, True, False),
    "ASN00004": ("2026-11-28T10:00:00+07:00", False, False, False),
    "ASN00009": ("2026-11-30T23:30:00+00:00", True, True, True),
    "BSN00005": ("2026-11-05T09:00:00+07:00", False, False, True),
    "BSN00006": ("2026-12-15T09:00:00+07:00", True, True, False),
    "ASN00007": ("2026-10-31T16:00:00+07:00", True, True, True),  # before the range
}
EXPECTED = {  # (agency, month) -> received, digitized, full_components, result, signed
    ("ASN", "2026-11"): (4, 4, 2, 2, 1),
    ("ASN", "2026-12"): (1, 1, 1, 1, 1),
    ("BSN", "2026-11"): (1, 1, 0, 0, 1),
    ("BSN", "2026-12"): (1, 1, 1, 1, 0),
}


def build(settings: Settings) -> Pipeline:
    """Given the known set stored through the real version and result writers (test stages
    for what the OCR, component and signing stages decide), indexed in the catalog."""
    pipeline = Pipeline.from_settings(settings)
    store = pipeline.store
    store.put(layout.batch_record(BATCH), json.dumps({
        "batch_id": BATCH, "original": f"batches/{BATCH}/original.pdf", "sha256": "0" * 64,
        "size": 10, "file": "scan.pdf", "received_at": "2026-12-01T08:00:00+00:00",
        "status": "done", "pages": 0}).encode())
    for i in range(len(KNOWN) * 2):
        store.put(layout.page_facts(BATCH, i), json.dumps({"index": i, "status": "ok"}).encode())
        store.put(layout.page_pdf(BATCH, i), f"%page {i}\n".encode())
    days = {code: at for code, (at, *_rest) in KNOWN.items()}
    complete = {c for c, k in KNOWN.items() if k[1]}
    signed = {c for c, k in KNOWN.items() if k[3]}
    pipeline.dossiers.stages = [JoinPages(), ReceiptDay(days), Marks(complete, signed)]
    pipeline.dossiers.result_stages = [JoinPages()]
    for n, (code, (_at, _full, result, _signed)) in enumerate(KNOWN.items()):
        pipeline.dossiers.store_version(code, code[:3], "barcode", [PageRef(BATCH, 2 * n)],
                                        claim=f"{BATCH}:{code}")
        if result:
            pipeline.dossiers.store_result(code, [PageRef(BATCH, 2 * n + 1)],
                                           claim=f"{BATCH}:{code}:r")
    return pipeline


@pytest.fixture(scope="module")
def sqlite_pipeline(tmp_path_factory) -> Pipeline:
    return build(Settings(data_dir=tmp_path_factory.mktemp("report") / "data", workers=1,
                          dossier_code_grammar=ASN, scanner_discovery=False))


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with fresh_postgres() as url:
        yield url


def figures(report: reports.Report) -> dict[tuple[str, str], tuple[int, ...]]:
    return {(r.agency, r.month): tuple(r.counts[f] for f in reports.FIGURES)
            for r in report.rows}


def test_figures_per_agency_and_month_on_sqlite(sqlite_pipeline: Pipeline) -> None:
    """Given the known set, when the report covers 1 Nov to 31 Dec 2026, then each agency's
    month has the figures the set implies (months in Vietnam time, October left out)."""
    from datetime import date

    report = reports.digitization(sqlite_pipeline.catalog, date(2026, 11, 1),
                                  date(2026, 12, 31), None)
    assert figures(report) == EXPECTED
    assert report.total.counts == dict(zip(reports.FIGURES, (7, 7, 4, 4, 3), strict=True))
    asn_nov = report.rows[0]
    assert asn_nov.shares() == {"digitized": 100.0, "full_components": 50.0, "result": 50.0,
                                "signed": 25.0}


def test_figures_are_the_same_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    """Given the same set in a PostgreSQL catalog, then the report gives the same figures."""
    from datetime import date

    pipeline = build(Settings(data_dir=tmp_path / "data", workers=1, database_url=postgres_url,
                              dossier_code_grammar=ASN, scanner_discovery=False))
    assert pipeline.catalog.engine.dialect.name == "postgresql"
    report = reports.digitization(pipeline.catalog, date(2026, 11, 1), date(2026, 12, 31), None)
    assert figures(report) == EXPECTED
    items, _ = pipeline.catalog.list_dossiers(None, where=reports.list_conditions(
        "full_components", "2026-11", date(2026, 11, 1), date(2026, 12, 31)))
    assert [d["dossier_id"] for d in items] == ["ASN00001", "ASN00002"]


def test_an_agency_filter_keeps_its_rows_only(sqlite_pipeline: Pipeline) -> None:
    from datetime import date

    report = reports.digitization(sqlite_pipeline.catalog, date(2026, 11, 1),
                                  date(2026, 12, 31), ("BSN",))
    assert set(figures(report)) == {("BSN", "2026-11"), ("BSN", "2026-12")}


def test_rebuild_from_storage_gives_the_same_figures(sqlite_pipeline: Pipeline,
                                                     tmp_path: Path) -> None:
    """Given the catalog rebuilt from object storage alone, then the figures are unchanged
    (flags and results are derived from the stored manifests)."""
    from datetime import date

    sqlite_pipeline.catalog.rebuild(sqlite_pipeline.store)
    report = reports.digitization(sqlite_pipeline.catalog, date(2026, 11, 1),
                                  date(2026, 12, 31), None)
    assert figures(report) == EXPECTED


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]),
           "SOHOA_DATA_DIR": str(settings.storage.data_dir), "SOHOA_DOSSIER_CODE_GRAMMAR": ASN}
    return subprocess.run([sys.executable, "-m", "api.cli", "report", "digitization", *args],
                          capture_output=True, text=True, env=env, timeout=120)


def test_cli_prints_json_and_csv(sqlite_pipeline: Pipeline) -> None:
    """When `sohoa report digitization --json` and `--csv` run, then both give the known
    figures; the CSV has the documented columns, a line per agency and month, per agency, and
    the total; the run is audited."""
    settings = sqlite_pipeline.settings
    out = _cli(settings, "--from", "2026-11-01", "--to", "2026-12-31", "--json")
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    got = {(r["agency"], r["month"]): tuple(r[f] for f in reports.FIGURES) for r in body["rows"]}
    assert got == EXPECTED
    out = _cli(settings, "--from", "2026-11-01", "--to", "2026-12-31", "--csv",
               "--agency", "asn")
    assert out.returncode == 0, out.stderr
    lines = list(csv.DictReader(io.StringIO(out.stdout)))
    assert list(lines[0]) == list(reports.CSV_COLUMNS)
    assert [(r["agency"], r["month"], r["received"], r["full_components_pct"]) for r in lines] \
        == [("ASN", "2026-11", "4", "50.0"), ("ASN", "2026-12", "1", "100.0"),
            ("ASN", "", "5", "60.0"), ("", "", "5", "60.0")]
    entries = sqlite_pipeline.audit.for_target("digitization", ("report.digitization",))
    assert entries and entries[-1]["detail"]["via"] == "cli"


def test_cli_refuses_a_malformed_date(sqlite_pipeline: Pipeline) -> None:
    out = _cli(sqlite_pipeline.settings, "--from", "2026-13-01", "--to", "2026-12-31")
    assert out.returncode == 2 and "is not a date" in out.stderr


@pytest.fixture(scope="module")
def api(sqlite_pipeline: Pipeline) -> Iterator[tuple[TestClient, dict[str, str]]]:
    client = TestClient(create_app(sqlite_pipeline.settings, submit=lambda *a, **k: {}))
    client.__enter__()
    store = KeyStore(sqlite_pipeline.settings.storage.catalog_url)
    keys = {"auditor": store.create("auditor", ["*"]), "admin": store.create("admin", ["*"]),
            "processor": store.create("processor", ["*"]),
            "scanner": store.create("scanner", ["*"]),
            "bsn_auditor": store.create("auditor", ["BSN"])}
    yield client, keys
    client.__exit__(None, None, None)


def get(client: TestClient, key: str, url: str, **params: Any) -> Any:
    return client.get(url, params=params, headers={"Authorization": f"Bearer {key}"})


def test_api_report_for_auditor_and_admin(api) -> None:
    """Given an auditor's and an admin's key, when they ask for the report, then both get the
    known figures, each with the link of the dossier list behind it, which lists exactly the
    dossiers counted."""
    client, keys = api
    for role in ("auditor", "admin"):
        r = get(client, keys[role], "/api/v1/reports/digitization", **{
            "from": "2026-11-01", "to": "2026-12-31"})
        assert r.status_code == 200, r.text
        got = {(row["agency"], row["month"]): tuple(row[f] for f in reports.FIGURES)
               for row in r.json()["rows"]}
        assert got == EXPECTED
    asn_nov = r.json()["rows"][0]
    link = asn_nov["links"]["result"]
    assert link.startswith("/api/v1/dossiers?figure=result&agency=ASN&month=2026-11")
    listed = client.get(link, headers={"Authorization": f"Bearer {keys['auditor']}"})
    assert [d["dossier_id"] for d in listed.json()["items"]] == ["ASN00001", "ASN00003"]
    total = r.json()["total"]["links"]["signed"]
    listed = client.get(total, headers={"Authorization": f"Bearer {keys['auditor']}"})
    assert [d["dossier_id"] for d in listed.json()["items"]] == ["ASN00001", "ASN00009",
                                                                 "BSN00005"]


def test_api_report_scoped_key_sees_its_agency_only(api) -> None:
    client, keys = api
    r = get(client, keys["bsn_auditor"], "/api/v1/reports/digitization",
            **{"from": "2026-11-01", "to": "2026-12-31"})
    assert {row["agency"] for row in r.json()["rows"]} == {"BSN"}
    r = get(client, keys["bsn_auditor"], "/api/v1/reports/digitization",
            **{"from": "2026-11-01", "to": "2026-12-31", "agency": "ASN"})
    assert r.json()["rows"] == [] and r.json()["total"]["received"] == 0


@pytest.mark.parametrize("role", ["processor", "scanner"])
def test_api_report_refuses_other_roles(api, role: str) -> None:
    client, keys = api
    r = get(client, keys[role], "/api/v1/reports/digitization",
            **{"from": "2026-11-01", "to": "2026-12-31"})
    assert r.status_code == 403


@pytest.mark.parametrize("params", [
    {"from": "2026-11-31", "to": "2026-12-31"}, {"from": "yesterday", "to": "2026-12-31"},
    {"to": "2026-12-31"},
    {"from": "2026-11-01", "to": "2026-12-31", "agency": "A\x00"}])
def test_api_report_refuses_malformed_input(api, params: dict[str, str]) -> None:
    client, keys = api
    r = get(client, keys["auditor"], "/api/v1/reports/digitization", **params)
    assert r.status_code == 422


def test_dossier_list_refuses_a_malformed_figure_or_month(api) -> None:
    client, keys = api
    for params in ({"figure": "all"}, {"month": "2026-13"}, {"received_from": "soon"}):
        assert get(client, keys["auditor"], "/api/v1/dossiers", **params).status_code == 422


def test_api_report_is_audited(api, sqlite_pipeline: Pipeline) -> None:
    client, keys = api
    get(client, keys["auditor"], "/api/v1/reports/digitization",
        **{"from": "2026-11-01", "to": "2026-11-30"})
    # the report's entry is written before the answer (not one of the batched reads)
    entries = sqlite_pipeline.audit.for_target("digitization", ("report.digitization",))
    assert any(e["detail"].get("via") == "api" and e["detail"]["to"] == "2026-11-30"
               for e in entries)


def web_login(client: TestClient, settings: Settings, username: str, role: str,
              agencies: list[str]) -> None:
    """Signs `client` in as a new web user of this role."""
    import re

    from api.web.users import UserStore

    UserStore(settings.storage.catalog_url).create(username, "mat-khau-dai-1", role, agencies)
    client.cookies.clear()
    form = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token
    client.post("/login", data={"username": username, "password": "mat-khau-dai-1",
                                "csrf": token.group(1)})
    assert "sohoa_session" in client.cookies


def test_web_page_shows_the_figures_with_links(api, sqlite_pipeline: Pipeline) -> None:
    """Given an auditor signed in to the web app, when they open the report, then the nav links
    to it, the page shows each figure (with its share) as a link to the dossiers behind it, and
    that list names exactly those dossiers."""
    from html import unescape

    client, _ = api
    web_login(client, sqlite_pipeline.settings, "kiem.tra", "auditor", ["*"])
    page = client.get("/reports/digitization", params={"from": "2026-11-01",
                                                       "to": "2026-12-31"})
    assert page.status_code == 200
    assert 'href="/reports/digitization"' in page.text
    html = unescape(page.text)
    link = ("/reports/digitization/dossiers?figure=full_components&agency=ASN&month=2026-11"
            "&from=2026-11-01&to=2026-12-31")
    assert f'<a href="{link}">2</a>' in html
    assert "(50.0%)" in html and "complete_by_components" in html  # the help text
    listed = client.get(link)
    assert listed.status_code == 200
    assert "ASN00001" in listed.text and "ASN00002" in listed.text
    assert "ASN00003" not in listed.text and "ASN00009" not in listed.text


def test_web_page_is_for_auditors_and_refuses_malformed_dates(api,
                                                               sqlite_pipeline: Pipeline) -> None:
    client, _ = api
    web_login(client, sqlite_pipeline.settings, "xu.ly", "processor", ["*"])
    assert client.get("/reports/digitization").status_code == 403
    web_login(client, sqlite_pipeline.settings, "kiem.tra.bsn", "auditor", ["BSN"])
    page = client.get("/reports/digitization", params={"from": "2026-11-01",
                                                       "to": "2026-12-31"})
    assert "ASN" not in page.text.replace("BSN", "")
    bad = client.get("/reports/digitization", params={"from": "2026-02-30"})
    assert bad.status_code == 422 and "is not a date" in bad.text
    client.cookies.clear()
