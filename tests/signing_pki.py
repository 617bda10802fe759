"""Test PKI made at test time (no key is committed): a CA, agency certificates, PKCS#12 files,
a SoftHSM2 token holding a key, an RFC 3161 timestamp server on loopback, and poppler's `pdfsig`
with a temporary NSS database that trusts the CA."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SOFTHSM_MODULE = next((p for p in ("/usr/lib/softhsm/libsofthsm2.so",
                                   "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so")
                       if Path(p).exists()), "/usr/lib/softhsm/libsofthsm2.so")


@dataclass
class Issued:
    cert: x509.Certificate
    key: rsa.RSAPrivateKey

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def fingerprint(self) -> str:
        return self.cert.fingerprint(hashes.SHA256()).hex()


def _name(cn: str, org: str | None = None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COUNTRY_NAME, "VN")]
    if org:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    parts.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(parts)


def make_ca(cn: str = "Sohoa Test Root CA") -> Issued:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return Issued(cert, key)


def issue(ca: Issued, cn: str, days: int = 365, timestamping: bool = False,
          valid_from_days: int = -1) -> Issued:
    """A leaf certificate of `ca`: a signing certificate, or a TSA's with `timestamping`."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(cn, cn))
               .issuer_name(ca.cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now + dt.timedelta(days=valid_from_days))
               .not_valid_after(now + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca.key.public_key()), critical=False))
    if timestamping:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True).add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True)
    else:
        builder = builder.add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False),
            critical=True)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def pkcs12_file(path: Path, leaf: Issued, ca: Issued, password: str | None) -> Path:
    enc = (serialization.BestAvailableEncryption(password.encode()) if password
           else serialization.NoEncryption())
    path.write_bytes(pkcs12.serialize_key_and_certificates(
        b"agency", leaf.key, leaf.cert, [ca.cert], enc))
    return path


# ---- SoftHSM2 ------------------------------------------------------------------------------


@dataclass
class Token:
    module: str
    label: str
    key_label: str
    pin: str
    conf: Path


def softhsm_token(where: Path, leaf: Issued, label: str = "agency-token",
                  key_label: str = "agency-key", pin: str = "246810") -> Token:
    """A SoftHSM2 token in `where` holding `leaf`'s key and certificate under `key_label`;
    SOFTHSM2_CONF is set for this process (and its children) to find it."""
    tokens = where / "tokens"
    tokens.mkdir(parents=True, exist_ok=True)
    conf = where / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n"
                    "log.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    env = {**os.environ}
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin",
                    "13579", "--pin", pin], check=True, capture_output=True, env=env)
    key_pem = where / "key.pem"
    key_pem.write_bytes(leaf.key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    try:
        subprocess.run(["softhsm2-util", "--import", str(key_pem), "--token", label, "--label",
                        key_label, "--id", "01", "--pin", pin], check=True, capture_output=True,
                       env=env)
    finally:
        key_pem.unlink()
    cert_der = where / "cert.der"
    cert_der.write_bytes(leaf.cert.public_bytes(serialization.Encoding.DER))
    subprocess.run(["pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", label,
                    "--login", "--pin", pin, "--write-object", str(cert_der), "--type", "cert",
                    "--label", key_label, "--id", "01"], check=True, capture_output=True, env=env)
    return Token(SOFTHSM_MODULE, label, key_label, pin, conf)


# ---- a timestamp server -------------------------------------------------------------------


@contextmanager
def timestamp_server(tsa: Issued, ca: Issued) -> Iterator[str]:
    """An RFC 3161 timestamp server on loopback (pyHanko's DummyTimeStamper answering over
    HTTP); yields its URL. Counts the requests it answered in `.requests` of the handler."""
    from asn1crypto import keys as asn1_keys
    from asn1crypto import tsp
    from asn1crypto import x509 as asn1_x509
    from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper

    stamper = DummyTimeStamper(
        tsa_cert=asn1_x509.Certificate.load(tsa.cert.public_bytes(serialization.Encoding.DER)),
        tsa_key=asn1_keys.PrivateKeyInfo.load(tsa.key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())),
        certs_to_embed=[asn1_x509.Certificate.load(
            ca.cert.public_bytes(serialization.Encoding.DER))])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            answer = stamper.request_tsa_response(tsp.TimeStampReq.load(body)).dump()
            self.send_response(200)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
            server.answered += 1  # type: ignore[attr-defined]

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.answered = 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/tsa"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# ---- poppler's pdfsig, the independent validator -----------------------------------------


def nss_db(where: Path, ca: Issued) -> Path:
    """A temporary NSS database that trusts `ca` (for pdfsig -nssdir)."""
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["certutil", "-N", "-d", f"sql:{where}", "--empty-password"], check=True,
                   capture_output=True)
    ca_pem = where / "ca.pem"
    ca_pem.write_bytes(ca.pem())
    subprocess.run(["certutil", "-A", "-d", f"sql:{where}", "-n", "sohoa-test-ca", "-t",
                    "CT,C,C", "-i", str(ca_pem)], check=True, capture_output=True)
    return where


def pdfsig(pdf: Path, nssdir: Path | None = None) -> str:
    args = ["pdfsig"]
    if nssdir is not None:
        args += ["-nssdir", f"sql:{nssdir}"]
    return subprocess.run([*args, str(pdf)], capture_output=True, text=True).stdout


def have_tools(*names: str) -> bool:
    return all(shutil.which(n) for n in names)


def signature_blocks(report: str) -> list[str]:
    return re.split(r"^Signature #\d+:", report, flags=re.M)[1:]
