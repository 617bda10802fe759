"""`sohoa signer add/list/remove` as a user runs them (the console script in a subprocess), and a
generated dossier signed end to end through `sohoa ingest`, checked with poppler's `pdfsig`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pikepdf
import pytest

from tests import signing_pki as pki
from tests.synth import make_batch

SOHOA = Path(sys.executable).parent / "sohoa"
PASSWORD = "p12-Mật-khẩu-7731"
PIN = "531246"


def sohoa(data: Path, *args: str, stdin: str | None = None, **env: str
          ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SOHOA), *args], capture_output=True, text=True, timeout=900,
                          input=stdin, env={**os.environ, "SOHOA_DATA_DIR": str(data), **env})


@pytest.fixture(scope="module")
def pki_files(tmp_path_factory) -> dict:
    where = tmp_path_factory.mktemp("pki")
    root = pki.make_ca()
    leaf = pki.issue(root, "UBND phường Đa Kao")
    (where / "ca.pem").write_bytes(root.pem())
    before = os.environ.get("SOFTHSM2_CONF")
    token = pki.softhsm_token(where / "hsm", leaf, pin=PIN)
    yield {"ca": root, "leaf": leaf, "ca_pem": where / "ca.pem", "token": token,
           "p12": pki.pkcs12_file(where / "agency.p12", leaf, root, PASSWORD),
           "nss": pki.nss_db(where / "nss", root)}
    if before is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = before


def signers(data: Path) -> list[dict]:
    listed = sohoa(data, "signer", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)


def test_add_a_pkcs12_signer_lists_it_and_keeps_the_password_apart(tmp_path: Path,
                                                                   pki_files: dict) -> None:
    """Given a PKCS#12 file and its password on stdin, `signer add` registers it: the list shows
    the certificate's fingerprint and a copy in the secrets dir (0700; files 0600); the password
    is nowhere else in the data dir, nor in what the command printed."""
    data = tmp_path / "data"
    added = sohoa(data, "signer", "add", "--agency", "000.00.04.H40", "--pkcs12",
                  str(pki_files["p12"]), "--password-stdin", stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    assert "UBND phường Đa Kao" in added.stdout
    [entry] = signers(data)
    assert entry["agency"] == "000.00.04.H40" and entry["kind"] == "pkcs12"
    assert entry["fingerprint"] == pki_files["leaf"].fingerprint()
    secrets = data / "secrets"
    assert Path(entry["pkcs12_path"]).parent == secrets.resolve()
    assert secrets.stat().st_mode & 0o777 == 0o700
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in secrets.iterdir())
    assert PASSWORD not in added.stdout + added.stderr
    for path in data.rglob("*"):
        if path.is_file() and secrets not in path.parents:
            assert PASSWORD.encode() not in path.read_bytes(), path
    assert not list(data.glob("objects/**/*.p12"))


def test_a_wrong_password_is_refused_and_registers_nothing(tmp_path: Path, pki_files: dict) -> None:
    data = tmp_path / "data"
    refused = sohoa(data, "signer", "add", "--agency", "H40", "--pkcs12", str(pki_files["p12"]),
                    "--password-stdin", stdin="not-the-password\n")
    assert refused.returncode == 1
    assert "wrong password" in refused.stderr and "not-the-password" not in refused.stderr
    assert signers(data) == []


def test_add_a_usb_token_signer_and_a_wrong_pin_is_refused(tmp_path: Path, pki_files: dict) -> None:
    data = tmp_path / "data"
    t = pki_files["token"]
    args = ["signer", "add", "--agency", "H40", "--pkcs11-module", t.module, "--token-label",
            t.label, "--key-label", t.key_label, "--pin-stdin", "--name", "UBND phường 1"]
    wrong = sohoa(data, *args, stdin="999999\n")
    assert wrong.returncode == 1 and "PIN was refused" in wrong.stderr
    assert "999999" not in wrong.stderr
    added = sohoa(data, *args, stdin=PIN + "\n")
    assert added.returncode == 0, added.stderr
    [entry] = signers(data)
    assert (entry["kind"], entry["token_label"], entry["key_label"], entry["name"]) == \
        ("pkcs11", t.label, t.key_label, "UBND phường 1")
    assert entry["fingerprint"] == pki_files["leaf"].fingerprint()


@pytest.mark.parametrize("args", [
    ["--agency", "H40"],  # neither a file nor a token
    ["--agency", "H40", "--pkcs12", "{p12}", "--pkcs11-module", "/x.so"],  # both
    ["--agency", "H40", "--pkcs11-module", "/x.so"],  # no labels
    ["--agency", "*", "--pkcs12", "{p12}"],  # every agency is not an agency
    ["--agency", "a b", "--pkcs12", "{p12}"],
])
def test_malformed_signer_add_is_a_usage_error(tmp_path: Path, pki_files: dict,
                                               args: list[str]) -> None:
    args = [a.replace("{p12}", str(pki_files["p12"])) for a in args]
    result = sohoa(tmp_path / "data", "signer", "add", *args, "--password-stdin", stdin="x\n")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_only_the_owner_of_the_secrets_directory_may_manage_signers(tmp_path: Path,
                                                                    pki_files: dict) -> None:
    """Given a secrets directory owned by another account (the service's), adding or removing a
    signer is refused: that account alone may read the keys."""
    data, secrets = tmp_path / "data", tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    os.chown(secrets, 65534, 65534)
    refused = sohoa(data, "signer", "add", "--agency", "H40", "--pkcs12", str(pki_files["p12"]),
                    "--password-stdin", stdin=PASSWORD + "\n", SOHOA_SECRETS_DIR=str(secrets))
    assert refused.returncode == 1 and "only the owner" in refused.stderr
    assert list(secrets.iterdir()) == []
    removed = sohoa(data, "signer", "remove", "--agency", "H40", SOHOA_SECRETS_DIR=str(secrets))
    assert removed.returncode == 1 and "only the owner" in removed.stderr


def test_remove_forgets_the_signer_and_deletes_its_secrets(tmp_path: Path, pki_files: dict) -> None:
    data = tmp_path / "data"
    sohoa(data, "signer", "add", "--agency", "H40", "--pkcs12", str(pki_files["p12"]),
          "--password-stdin", stdin=PASSWORD + "\n")
    assert sohoa(data, "signer", "remove", "--agency", "H40").returncode == 0
    assert signers(data) == []
    assert list((data / "secrets").iterdir()) == []
    again = sohoa(data, "signer", "remove", "--agency", "H40")
    assert again.returncode == 1 and "has no signer" in again.stderr
    trail = sohoa(data, "audit", "verify")
    assert trail.returncode == 0, trail.stdout


def test_a_generated_dossier_is_signed_end_to_end_and_verify_catches_tampering(
        tmp_path: Path, pki_files: dict) -> None:
    """Given the dossier's agency registered with a PKCS#12 signer, when `sohoa ingest` runs on a
    generated dossier, then pdfsig finds its stored PDF validly signed by the agency and trusted
    via the CA, the PDF/A-2b declaration stays, the note is extractable, `sohoa verify` passes;
    after a byte of the PDF changes, `sohoa verify` reports the signature broken."""
    batch = make_batch(n_dossiers=1, text_pages=0, with_id_card=False, seed=7)
    code = batch.dossiers[0].code
    agency = code.split("-")[0]
    data = tmp_path / "data"
    env = {"SOHOA_TRUST_ROOTS": str(pki_files["ca_pem"]), "SOHOA_WORKERS": "1"}
    assert sohoa(data, "signer", "add", "--agency", agency, "--pkcs12", str(pki_files["p12"]),
                 "--password-stdin", stdin=PASSWORD + "\n", **env).returncode == 0
    ingested = sohoa(data, "ingest", str(batch.write_pdf(tmp_path / "scan.pdf")), "--json", **env)
    assert ingested.returncode == 0, ingested.stderr
    [dossier] = json.loads(ingested.stdout)["batches"][0]["dossiers"]
    assert dossier["dossier_id"] == code
    pdf = data / "objects" / dossier["pdf"]
    report = pki.pdfsig(pdf, pki_files["nss"])
    assert "Signature is Valid." in report and "Certificate is Trusted." in report
    assert "UBND phường Đa Kao" in report
    with pikepdf.open(pdf) as doc:
        assert doc.open_metadata().get("pdfaid:part") == "2"
    text = subprocess.run(["pdftotext", "-f", "1", "-l", "1", str(pdf), "-"], capture_output=True,
                          text=True).stdout
    assert "Bản sao điện tử được số hóa từ bản chính" in text
    assert "Cơ quan: UBND phường Đa Kao" in text
    assert PASSWORD not in ingested.stdout + ingested.stderr
    ok = sohoa(data, "verify", code, **env)
    assert ok.returncode == 0, ok.stdout
    body = bytearray(pdf.read_bytes())
    at = body.find(b"stream", 2000) + 40
    body[at] ^= 0x01
    os.chmod(pdf, 0o644)
    pdf.write_bytes(bytes(body))
    broken = sohoa(data, "verify", code, **env)
    assert broken.returncode == 1
    assert "SIGNATURE_BROKEN" in broken.stdout and "#signature" in broken.stdout
