"""The agency signs (issue 13, point 3): dossiers of an agency with a signer are stored signed
(PAdES, invisible, still PDF/A-2b, with the digitization note on page 1), checked with poppler's
`pdfsig` as the independent validator; agencies without one get `unsigned`; a signer that fails
never loses the pages; verification validates every signature."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path

import pikepdf
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from api.keys import KeyStore
from ingest import signing
from ingest.page_stages import DetectBlank, ReadBarcodes
from ingest.pipeline import Pipeline
from ingest.runner import run_file
from ingest.settings import Settings
from storage import layout
from storage.errors import TRANSIENT
from storage.integrity import problems, verify
from storage.signatures import check_pdf, load_trust_roots
from storage.signers import Signers
from tests import signing_pki as pki
from tests.synth import ASN_BATCH

ASN = r"^(?P<agency>ASN)(?P<date>)(?P<seq>\d{5})$"
PASSWORD = "mật-khẩu-p12-Zq81"
PIN = "864209"


@pytest.fixture(scope="module")
def ca(tmp_path_factory) -> dict:
    """A CA, the certificate of agency ASN's office, its PKCS#12 file, its CA as PEM, a NSS
    database trusting the CA (for pdfsig) and a SoftHSM2 token holding the same key."""
    where = tmp_path_factory.mktemp("pki")
    root = pki.make_ca()
    leaf = pki.issue(root, "UBND phường Bến Nghé")
    (where / "ca.pem").write_bytes(root.pem())
    before = os.environ.get("SOFTHSM2_CONF")
    token = pki.softhsm_token(where / "hsm", leaf, pin=PIN)
    yield {"ca": root, "leaf": leaf, "p12": pki.pkcs12_file(where / "asn.p12", leaf, root, PASSWORD),
           "ca_pem": where / "ca.pem", "nss": pki.nss_db(where / "nss", root), "token": token,
           "where": where}
    if before is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = before


def make_pipeline(data: Path, **settings: object) -> Pipeline:
    s = Settings(data_dir=data, workers=1, dossier_code_grammar=ASN, scanner_discovery=False,
                 **settings)
    pipeline = Pipeline.from_settings(s)
    pipeline.page_stages = [ReadBarcodes(), DetectBlank()]  # the ASN batch needs no OCR
    return pipeline


def add_pkcs12(pipeline: Pipeline, agency: str, ca: dict, password: str = PASSWORD) -> None:
    signer = signing.load_pkcs12(ca["p12"].read_bytes(), SecretStr(PASSWORD))
    info = signing.describe_certificate(signer.signing_cert)
    Signers(pipeline.settings.storage.catalog_url, pipeline.settings.signing.secrets_dir).add(
        agency, "pkcs12", info.name, info.fingerprint, info.subject, "test",
        SecretStr(password), pkcs12=ca["p12"].read_bytes(), not_after=info.not_after)


def add_pkcs11(pipeline: Pipeline, agency: str, ca: dict, pin: str = PIN,
               token_label: str | None = None) -> None:
    t = ca["token"]
    Signers(pipeline.settings.storage.catalog_url, pipeline.settings.signing.secrets_dir).add(
        agency, "pkcs11", "UBND phường Bến Nghé", ca["leaf"].fingerprint(), "", "test",
        SecretStr(pin), module=t.module, token_label=token_label or t.label,
        key_label=t.key_label)


def stored_pdf(pipeline: Pipeline, code: str, where: Path) -> Path:
    manifest = pipeline.dossiers.versions(code)[-1]
    path = where / f"{code}.pdf"
    path.write_bytes(pipeline.store.get(manifest.objects["dossier.pdf"].key))
    return path


@pytest.fixture(scope="module")
def signed_run(tmp_path_factory, ca: dict) -> tuple[Pipeline, dict]:
    """Agency ASN has a PKCS#12 signer; the ASN batch (5 dossiers) is ingested."""
    pipeline = make_pipeline(tmp_path_factory.mktemp("signed") / "data",
                             trust_roots=str(ca["ca_pem"]))
    add_pkcs12(pipeline, "ASN", ca)
    record = run_file(pipeline, ASN_BATCH)
    assert record.status == "done", record.error
    return pipeline, record


def test_a_dossier_of_an_agency_with_a_signer_is_signed_and_pdfsig_trusts_it(
        signed_run, ca: dict, tmp_path: Path) -> None:
    """Given agency ASN with a PKCS#12 signer, when its batch is ingested, then each stored dossier
    PDF carries one valid signature of the agency's certificate that pdfsig trusts via the CA."""
    pipeline, record = signed_run
    for d in record.dossiers:
        report = pki.pdfsig(stored_pdf(pipeline, d.dossier_id, tmp_path), ca["nss"])
        blocks = pki.signature_blocks(report)
        assert len(blocks) == 1, report
        assert "Signature is Valid." in blocks[0]
        assert "Certificate is Trusted." in blocks[0]
        assert "UBND phường Bến Nghé" in blocks[0]
        assert "ETSI.CAdES.detached" in blocks[0]


def test_the_manifest_says_signed_by_whom_at_which_level_and_when(signed_run, ca: dict) -> None:
    pipeline, record = signed_run
    manifest = pipeline.dossiers.versions(record.dossiers[0].dossier_id)[-1]
    sig = manifest.signature
    assert sig["status"] == "signed"
    assert sig["signer"] == ca["leaf"].fingerprint()
    assert sig["level"] == "B-B"
    assert sig["at"].endswith("+07:00")
    pdfs = sorted(n for n in manifest.objects if n.endswith(".pdf"))
    assert sig["documents"] == pdfs and "dossier.pdf" in pdfs  # with each component's copy


def test_the_signed_pdf_is_still_pdfa_2b_and_the_note_is_real_text_top_right(
        signed_run, tmp_path: Path) -> None:
    """Then the file still declares PDF/A-2b, its fonts are embedded, the signature has no
    appearance (invisible), and page 1 reads the note at its top right."""
    pipeline, record = signed_run
    path = stored_pdf(pipeline, record.dossiers[0].dossier_id, tmp_path)
    with pikepdf.open(path) as pdf:
        meta = pdf.open_metadata()
        assert meta.get("pdfaid:part") == "2" and meta.get("pdfaid:conformance") == "B"
        # the document info and the XMP metadata still say the same (PDF/A 6.6.2.3.1)
        assert str(pdf.docinfo["/Producer"]) == meta.get("pdf:Producer")
        assert str(pdf.docinfo["/Title"]) == meta.get("dc:title")
        widgets = [a for a in pdf.pages[0].obj.get("/Annots", [])
                   if a.get("/FT") == "/Sig" or a.get("/Parent", {}).get("/FT") == "/Sig"]
        for w in widgets:
            assert [float(v) for v in w.Rect] == [0, 0, 0, 0]
    fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True).stdout
    for line in fonts.splitlines()[2:]:
        assert " yes " in line, fonts  # embedded
    text = subprocess.run(["pdftotext", "-f", "1", "-l", "1", "-layout", str(path), "-"],
                          capture_output=True, text=True).stdout
    assert "Bản sao điện tử được số hóa từ bản chính" in text
    assert "Cơ quan: UBND phường Bến Nghé" in text
    at = pipeline.dossiers.versions(record.dossiers[0].dossier_id)[-1].signature["at"]
    assert f"Thời gian: {at}" in text
    box = subprocess.run(["pdftotext", "-f", "1", "-l", "1", "-bbox", str(path), "-"],
                         capture_output=True, text=True).stdout
    first = next(line for line in box.splitlines() if ">Bản<" in line)
    x_min = float(first.split('xMin="')[1].split('"')[0])
    y_min = float(first.split('yMin="')[1].split('"')[0])
    assert x_min > 595 / 2 and y_min < 842 / 8  # the top right quarter, top eighth


def test_verification_finds_every_signature_intact_and_trusted(signed_run, ca: dict) -> None:
    pipeline, record = signed_run
    code = record.dossiers[0].dossier_id
    findings = verify(pipeline.store, code, pipeline.catalog, pipeline.audit, [ca["ca_pem"]])
    signature = [f for f in findings if f.key.endswith("#signature")]
    pdfs = [n for n in pipeline.dossiers.versions(code)[-1].objects if n.endswith(".pdf")]
    assert len(signature) == len(pdfs) and all(f.problem == "ok" for f in signature), signature
    assert not problems(findings)


def test_a_tampered_signed_pdf_is_reported_broken_by_verify(tmp_path: Path, ca: dict) -> None:
    """Given a signed dossier whose stored PDF is changed afterwards (one byte of the signed
    range), `sohoa verify`'s check reports the content changed and the signature broken."""
    pipeline = make_pipeline(tmp_path / "data", trust_roots=str(ca["ca_pem"]))
    add_pkcs12(pipeline, "ASN", ca)
    record = run_file(pipeline, ASN_BATCH)
    code = record.dossiers[0].dossier_id
    key = pipeline.dossiers.versions(code)[-1].objects["dossier.pdf"].key
    path = pipeline.store.file_path(key)
    assert path is not None
    data = bytearray(path.read_bytes())
    at = data.find(b"stream", 2000) + 40  # inside a content stream of the signed range
    data[at] ^= 0x01
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))
    found = {f.problem for f in problems(verify(pipeline.store, code, pipeline.catalog,
                                                pipeline.audit, [ca["ca_pem"]]))}
    assert {"changed", "signature_broken"} <= found


def test_an_agency_without_a_signer_gets_its_dossiers_unsigned(tmp_path: Path) -> None:
    pipeline = make_pipeline(tmp_path / "data")
    record = run_file(pipeline, ASN_BATCH)
    assert record.status == "done"
    manifest = pipeline.dossiers.versions(record.dossiers[0].dossier_id)[-1]
    assert manifest.signature == {"status": "unsigned"}
    report = pki.pdfsig(stored_pdf(pipeline, manifest.dossier_id, tmp_path))
    assert not pki.signature_blocks(report)


def test_another_agencys_signer_is_not_used(tmp_path: Path, ca: dict) -> None:
    """Given a signer for agency H40 only, ASN's dossiers stay unsigned."""
    pipeline = make_pipeline(tmp_path / "data")
    add_pkcs12(pipeline, "H40", ca)
    record = run_file(pipeline, ASN_BATCH)
    for d in record.dossiers:
        assert pipeline.dossiers.versions(d.dossier_id)[-1].signature == {"status": "unsigned"}


def test_a_usb_token_signs_through_pkcs11(tmp_path: Path, ca: dict) -> None:
    """Given agency ASN's key on a SoftHSM2 token (PKCS#11), sign_document signs with it."""
    pipeline = make_pipeline(tmp_path / "data")
    add_pkcs11(pipeline, "ASN", ca)
    pdf = ASN_BATCH.read_bytes()
    signed, info = signing.sign_document("ASN", pdf, pipeline.settings)
    assert info.status == "signed" and info.signer == ca["leaf"].fingerprint()
    (tmp_path / "t.pdf").write_bytes(signed)
    report = pki.pdfsig(tmp_path / "t.pdf", ca["nss"])
    assert "Signature is Valid." in report and "Certificate is Trusted." in report


def test_with_a_timestamp_server_the_signature_is_b_t(tmp_path: Path, ca: dict) -> None:
    """Given SOHOA_TSA_URL naming an RFC 3161 server (one on loopback), the signature carries
    its timestamp: level B-T, and the timestamp validates against the trust roots."""
    tsa = pki.issue(ca["ca"], "Sohoa Test TSA", timestamping=True)
    with pki.timestamp_server(tsa, ca["ca"]) as url:
        pipeline = make_pipeline(tmp_path / "data", tsa_url=url, trust_roots=str(ca["ca_pem"]))
        add_pkcs12(pipeline, "ASN", ca)
        signed, info = signing.sign_document("ASN", ASN_BATCH.read_bytes(), pipeline.settings)
    assert info.level == "B-T"
    checks = check_pdf(signed, load_trust_roots([ca["ca_pem"]]))
    assert len(checks) == 1 and checks[0].timestamped and checks[0].problem == "ok", checks
    (tmp_path / "t.pdf").write_bytes(signed)
    assert "Signature is Valid." in pki.pdfsig(tmp_path / "t.pdf", ca["nss"])


def test_validation_data_that_cannot_be_had_does_not_stop_signing(tmp_path: Path, ca: dict
                                                                  ) -> None:
    """Given trust roots of another CA (the signer's chain cannot be built, so no revocation
    data can be embedded), the document is still signed, without it."""
    other = tmp_path / "other-ca.pem"
    other.write_bytes(pki.make_ca("Another Root").pem())
    pipeline = make_pipeline(tmp_path / "data", trust_roots=str(other))
    add_pkcs12(pipeline, "ASN", ca)
    signed, info = signing.sign_document("ASN", ASN_BATCH.read_bytes(), pipeline.settings)
    assert info.status == "signed"
    (tmp_path / "t.pdf").write_bytes(signed)
    report = pki.pdfsig(tmp_path / "t.pdf", ca["nss"])
    assert "Signature is Valid." in report and "Certificate is Trusted." in report


def test_a_timestamp_server_that_does_not_answer_is_a_transient_failure(tmp_path: Path,
                                                                          ca: dict) -> None:
    pipeline = make_pipeline(tmp_path / "data", tsa_url="http://127.0.0.1:9/tsa", tsa_timeout_s=2)
    add_pkcs12(pipeline, "ASN", ca)
    with pytest.raises(signing.SignerUnavailable) as e:
        signing.sign_document("ASN", ASN_BATCH.read_bytes(), pipeline.settings)
    assert isinstance(e.value, TRANSIENT)


def test_an_absent_token_makes_the_batch_wait_and_keeps_its_pages(tmp_path: Path,
                                                                   ca: dict) -> None:
    """Given the agency's token not plugged in, ingesting stops with a transient `signer`
    error: the batch waits (it is tried again by itself), every page's work is kept, no version
    is stored unsigned; with the token back, the same run finishes signed."""
    pipeline = make_pipeline(tmp_path / "data")
    add_pkcs11(pipeline, "ASN", ca, token_label="not-plugged-in")
    with pytest.raises(signing.SignerUnavailable) as e:
        run_file(pipeline, ASN_BATCH)
    assert isinstance(e.value, TRANSIENT)
    records = [k for k in pipeline.store.list("batches/") if k.endswith("batch.json")]
    record = json.loads(pipeline.store.get(records[0]))
    batch_id = record["batch_id"]
    assert record["status"] == "waiting" and record["waiting_for"]["dependency"] == "signer"
    assert all(pipeline.store.exists(layout.page_facts(batch_id, i))
               for i in range(record["pages"]))
    assert not pipeline.dossiers.versions("ASN00123")
    add_pkcs11(pipeline, "ASN", ca)  # the token is back
    done = run_file(pipeline, ASN_BATCH)
    assert done.status == "done"
    assert pipeline.dossiers.versions("ASN00123")[-1].signature["status"] == "signed"


def test_a_wrong_pin_is_refused_not_retried_and_says_no_pin(tmp_path: Path, ca: dict) -> None:
    """A wrong PIN is not transient (retrying by itself would lock a token); the error names
    the token, never the PIN."""
    pipeline = make_pipeline(tmp_path / "data")
    add_pkcs11(pipeline, "ASN", ca, pin="000111")
    with pytest.raises(signing.SignerRefused) as e:
        run_file(pipeline, ASN_BATCH)
    assert not isinstance(e.value, TRANSIENT)
    assert "000111" not in str(e.value) and "PIN" in str(e.value)
    assert not pipeline.dossiers.versions("ASN00123")


def test_no_password_or_pin_reaches_a_log_the_database_or_object_storage(
        tmp_path: Path, ca: dict, caplog: pytest.LogCaptureFixture) -> None:
    """Given a PKCS#12 signer and a token signer added and used with every logger at DEBUG,
    neither the password nor the PIN appears in the log, the database or object storage, and
    the secrets are 0600 files in a 0700 directory."""
    caplog.set_level(logging.DEBUG)
    pipeline = make_pipeline(tmp_path / "data")
    add_pkcs12(pipeline, "ASN", ca)
    run_file(pipeline, ASN_BATCH)
    add_pkcs11(pipeline, "H40", ca)
    signing.sign_document("H40", ASN_BATCH.read_bytes(), pipeline.settings)
    with pytest.raises(signing.SignerRefused):
        signing.load_pkcs12(ca["p12"].read_bytes(), SecretStr("wrong-" + PASSWORD))
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert "signed" in logged  # the log was captured
    for secret in (PASSWORD, PIN):
        assert secret not in logged
        for path in (tmp_path / "data").rglob("*"):
            if path.is_file() and "secrets" not in path.parts:
                assert secret.encode() not in path.read_bytes(), path
    secrets = pipeline.settings.signing.secrets_dir
    assert secrets.stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in secrets.iterdir()) == ["ASN.p12", "ASN.secret", "H40.secret"]
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in secrets.iterdir())
    assert str(Signers(pipeline.settings.storage.catalog_url, secrets).secret("ASN")) == "**********"


def test_the_api_shows_the_signature_and_verifies_it_scoped_by_agency(signed_run, ca: dict
                                                                      ) -> None:
    pipeline, record = signed_run
    code = record.dossiers[0].dossier_id
    client = TestClient(create_app(pipeline.settings))
    store = KeyStore(pipeline.settings.storage.catalog_url)
    processor, auditor = store.create("processor", ["ASN"]), store.create("auditor", ["ASN"])
    other = store.create("auditor", ["H40"])
    with client:
        shown = client.get(f"/api/v1/dossiers/{code}", headers={"Authorization": f"Bearer {processor}"})
        assert shown.status_code == 200
        assert shown.json()["signature"]["status"] == "signed"
        assert shown.json()["signature"]["signer"] == ca["leaf"].fingerprint()
        checked = client.get(f"/api/v1/dossiers/{code}/verify",
                             headers={"Authorization": f"Bearer {auditor}"})
        assert checked.status_code == 200 and checked.json()["ok"] is True
        assert any(f["key"].endswith("#signature") and f["problem"] == "ok"
                   for f in checked.json()["findings"])
        assert client.get(f"/api/v1/dossiers/{code}/verify",
                          headers={"Authorization": f"Bearer {processor}"}).status_code == 403
        assert client.get(f"/api/v1/dossiers/{code}/verify",
                          headers={"Authorization": f"Bearer {other}"}).status_code == 404


def test_the_dossier_page_shows_a_signed_badge_and_an_unsigned_one(signed_run, tmp_path: Path
                                                                   ) -> None:
    """The web dossier page of a signed dossier says so (with who signed, in its title); a
    dossier of an agency without a signer shows "not signed"."""
    import re

    from api.web.users import UserStore

    pipeline, record = signed_run
    code = record.dossiers[0].dossier_id
    UserStore(pipeline.settings.storage.catalog_url).create("signing-viewer", "mật khẩu dài 12345",
                                                    "processor", ["ASN"], "Viewer")
    with TestClient(create_app(pipeline.settings)) as client:
        form = client.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        client.post("/login", data={"username": "signing-viewer",
                                    "password": "mật khẩu dài 12345", "csrf": csrf})
        page = client.get(f"/dossiers/{code}")
        assert page.status_code == 200
        badge = re.search(r'<span[^>]*id="signature-badge"[^>]*>([^<]*)</span>', page.text)
        assert badge and 'data-status="signed"' in badge.group(0)
        assert "UBND phường Bến Nghé" in badge.group(0)
    unsigned = make_pipeline(tmp_path / "data")
    run_file(unsigned, ASN_BATCH)
    UserStore(unsigned.settings.storage.catalog_url).create("signing-viewer", "mật khẩu dài 12345",
                                                    "processor", ["ASN"], "Viewer")
    with TestClient(create_app(unsigned.settings)) as client:
        form = client.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        client.post("/login", data={"username": "signing-viewer",
                                    "password": "mật khẩu dài 12345", "csrf": csrf})
        page = client.get(f"/dossiers/{code}")
        assert 'id="signature-badge" data-status="unsigned"' in page.text


class CopyOfPages:
    """A stand-in for the component splitter: one further PDF stored with the version."""

    name = "copies"

    def __call__(self, work) -> None:  # type: ignore[no-untyped-def]
        work.copies["components/01-bien-nhan.pdf"] = work.pdf
        work.copies["components/index.json"] = b"{}"


def test_every_pdf_copy_stored_with_the_version_is_signed_too(tmp_path: Path, ca: dict) -> None:
    """Given a stage that adds a component copy before signing, the copy is signed as well (and
    listed in the manifest's signature), a non-PDF copy is left alone, and verify checks both."""
    from ingest.dossier_stages import BuildPdfA, ExtractFields

    pipeline = make_pipeline(tmp_path / "data")
    pipeline.dossiers.stages = [ExtractFields(), BuildPdfA(), CopyOfPages(),
                                signing.Sign(signing.AgencySigning.from_settings(pipeline.settings))]
    add_pkcs12(pipeline, "ASN", ca)
    record = run_file(pipeline, ASN_BATCH)
    manifest = pipeline.dossiers.versions(record.dossiers[0].dossier_id)[-1]
    assert manifest.signature["documents"] == ["components/01-bien-nhan.pdf", "dossier.pdf"]
    copy = tmp_path / "copy.pdf"
    copy.write_bytes(pipeline.store.get(manifest.objects["components/01-bien-nhan.pdf"].key))
    report = pki.pdfsig(copy, ca["nss"])
    assert "Signature is Valid." in report and "Certificate is Trusted." in report
    assert pipeline.store.get(manifest.objects["components/index.json"].key) == b"{}"
    findings = verify(pipeline.store, manifest.dossier_id, pipeline.catalog, pipeline.audit,
                      [ca["ca_pem"]])
    assert sorted(f.key.rsplit("/", 1)[-1] for f in findings if f.key.endswith("#signature")) \
        == ["01-bien-nhan.pdf#signature", "dossier.pdf#signature"]
    assert not problems(findings)


@pytest.mark.parametrize("rotate", [0, 90, 180, 270])
def test_the_note_is_top_right_as_the_page_is_shown_whatever_its_rotation(
        tmp_path: Path, rotate: int) -> None:
    from ocr.note import add_note

    pdf = pikepdf.new()
    pdf.add_blank_page(page_size=(595, 842))
    pdf.pages[0].Rotate = rotate
    src = tmp_path / "in.pdf"
    pdf.save(src)
    out = tmp_path / "out.pdf"
    out.write_bytes(add_note(src.read_bytes(), ["Bản sao điện tử", "Cơ quan: UBND"]))
    box = subprocess.run(["pdftotext", "-bbox", str(out), "-"], capture_output=True,
                         text=True).stdout
    page = next(line for line in box.splitlines() if line.strip().startswith("<page "))
    width = float(page.split('width="')[1].split('"')[0])
    height = float(page.split('height="')[1].split('"')[0])
    word = next(line for line in box.splitlines() if ">Bản<" in line)
    x_min = float(word.split('xMin="')[1].split('"')[0])
    y_min = float(word.split('yMin="')[1].split('"')[0])
    assert x_min > width / 2 and y_min < height / 8, (width, height, x_min, y_min)


def test_signing_works_from_a_thread_that_runs_an_event_loop(tmp_path: Path, ca: dict) -> None:
    """Given a caller inside a running event loop (an async route, a test runner's loop), when a
    dossier is signed there, then pyHanko's own loop does not collide with it: it is signed."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    pipeline = make_pipeline(tmp_path / "data", trust_roots=str(ca["ca_pem"]))
    add_pkcs12(pipeline, "ASN", ca)

    async def inside_a_loop() -> str:
        record = run_file(pipeline, ASN_BATCH)
        manifest = pipeline.dossiers.versions(record.dossiers[0].dossier_id)[-1]
        findings = verify(pipeline.store, manifest.dossier_id, pipeline.catalog, pipeline.audit,
                          [ca["ca_pem"]])
        assert not problems(findings)  # validated inside the loop too
        return manifest.signature["status"]

    with ThreadPoolExecutor(1) as fresh:  # a thread of its own: this one may run a loop already
        assert fresh.submit(asyncio.run, inside_a_loop()).result() == "signed"
