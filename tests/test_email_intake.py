"""E-mail intake authenticates the scanner (scanners/email.py, issue 11): per-device SMTP AUTH
(PLAIN, LOGIN) over STARTTLS, the sender allow-list as a second check, AUTH in clear text only when
allowed. A real receiver on a loopback port, real `smtplib` clients, a self-signed certificate."""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import logging
import smtplib
import ssl
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from scanners.config import EmailConfig
from scanners.email import EmailReceiver
from scanners.spool import Spool

PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
TO = ["sohoa@office.example"]
ACCOUNTS = [
    # limited to its own sender address
    {"device": "mfp-a", "username": "mfp-a", "password": "pw-a-Secret!",
     "senders": ["Scan-A@office.example"]},
    # its senders come from the top-level allow-list
    {"device": "mfp-b", "username": "mfp-b", "password": "pw-b-Secret!"},
]
SENDERS = {"scan-b@office.example": "mfp-b"}


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key (PEM files)."""
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sohoa test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def client_tls(cert: tuple[Path, Path]) -> ssl.SSLContext:
    """What a scanner that trusts sohoa's certificate uses (hostname checked)."""
    return ssl.create_default_context(cafile=str(cert[0]))


class Accepted:
    """An accept that records what the spool hands over (the pipeline itself is not needed)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, path: Path, **kw: Any) -> dict[str, Any]:
        record = {"sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(), **kw}
        self.calls.append(record)
        return record


@pytest.fixture
def accepted() -> Accepted:
    return Accepted()


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool")


@pytest.fixture
def start(spool: Spool, accepted: Accepted) -> Iterator[Callable[..., EmailReceiver]]:
    started: list[EmailReceiver] = []

    def make(**config: Any) -> EmailReceiver:
        receiver = EmailReceiver(EmailConfig(**config), spool, accepted, retry_seconds=0.5).start()
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        receiver.stop()


@pytest.fixture
def tls_receiver(start: Callable[..., EmailReceiver], cert: tuple[Path, Path]) -> EmailReceiver:
    return start(accounts=ACCOUNTS, senders=SENDERS, certificate=cert[0], private_key=cert[1],
                 auth_failed_delay_seconds=0.3)


def message(sender: str, name: str = "Scan_0001.pdf", data: bytes = PDF) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, TO[0], "Scanned document"
    msg.set_content("Scanned.")
    msg.add_attachment(data, maintype="application", subtype="pdf", filename=name)
    return msg


def connect(port: int, tls: ssl.SSLContext | None) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", port, timeout=10)
    client.ehlo("scanner")
    if tls is not None:
        client.starttls(context=tls)
        client.ehlo("scanner")
    return client


def log_in(client: smtplib.SMTP, mechanism: str, username: str, password: str) -> None:
    client.user, client.password = username, password
    client.auth(mechanism, getattr(client, f"auth_{mechanism.lower()}"))


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.05)
    raise AssertionError("timed out")


def nothing_arrived(spool: Spool, accepted: Accepted) -> bool:
    time.sleep(0.3)  # a drain would have run by now
    return accepted.calls == [] and [p for p in spool.root.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_auth_over_starttls_delivers_the_scan_with_the_accounts_device(
        tls_receiver: EmailReceiver, client_tls: ssl.SSLContext, accepted: Accepted,
        mechanism: str) -> None:
    """Given accounts and a certificate, when a scanner does STARTTLS, AUTH (PLAIN or LOGIN) and
    mails a PDF from an address it may use, then the PDF is accepted, byte for byte, as a batch of
    the authenticated account's device."""
    with connect(tls_receiver.port, client_tls) as client:
        assert client.has_extn("auth") and {"PLAIN", "LOGIN"} <= set(client.esmtp_features["auth"].split())
        log_in(client, mechanism, "mfp-b", "pw-b-Secret!")
        client.send_message(message("scan-b@office.example"), "scan-b@office.example", TO)
    calls = wait_for(lambda: accepted.calls)
    assert [(c["device"], c["source"], c["file_name"], c["sha256"]) for c in calls] == [
        ("mfp-b", "email", "Scan_0001.pdf", hashlib.sha256(PDF).hexdigest())]


def test_smtplib_login_picks_a_mechanism_and_the_account_names_the_device(
        tls_receiver: EmailReceiver, client_tls: ssl.SSLContext, accepted: Accepted) -> None:
    """Given the same receiver, when a scanner uses plain `SMTP.login`, then its own sender
    address (any case) is accepted and the batch records its device, mfp-a."""
    with connect(tls_receiver.port, client_tls) as client:
        client.login("mfp-a", "pw-a-Secret!")
        client.send_message(message("scan-a@OFFICE.example"), "scan-a@OFFICE.example", TO)
    calls = wait_for(lambda: accepted.calls)
    assert [c["device"] for c in calls] == ["mfp-a"]


def test_a_wrong_password_gets_535_is_logged_without_it_and_nothing_is_accepted(
        tls_receiver: EmailReceiver, client_tls: ssl.SSLContext, accepted: Accepted, spool: Spool,
        caplog: pytest.LogCaptureFixture) -> None:
    """Given accounts, when a scanner logs in with a wrong password (or an unknown name), then it
    gets 535 after the failure delay, the refusal is logged with the name and not the password,
    the mail it tries next is refused with 530, and a third failure closes the connection."""
    caplog.set_level(logging.INFO, logger="scanners.email")
    with connect(tls_receiver.port, client_tls) as client:
        began = time.monotonic()
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            log_in(client, "PLAIN", "mfp-a", "guess-1234")
        assert refused.value.smtp_code == 535
        assert time.monotonic() - began >= 0.3
        with pytest.raises(smtplib.SMTPAuthenticationError) as unknown:
            log_in(client, "LOGIN", "nobody", "guess-5678")
        assert unknown.value.smtp_code == 535
        with pytest.raises(smtplib.SMTPSenderRefused) as mail:
            client.send_message(message("scan-a@office.example"), "scan-a@office.example", TO)
        assert mail.value.smtp_code == 530
        with pytest.raises(smtplib.SMTPAuthenticationError) as third:
            log_in(client, "PLAIN", "mfp-a", "guess-9012")
        assert third.value.smtp_code == 421  # and the connection is closed
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert any("'mfp-a'" in m and "wrong username or password" in m for m in refusals)
    assert any("'nobody'" in m for m in refusals)
    assert not any("guess-" in r.getMessage() for r in caplog.records)
    assert nothing_arrived(spool, accepted)


def test_mail_without_auth_gets_530_and_nothing_is_accepted(
        tls_receiver: EmailReceiver, client_tls: ssl.SSLContext, accepted: Accepted,
        spool: Spool) -> None:
    """Given accounts, when a scanner mails from an allowed sender address without AUTH (over TLS
    or not), then MAIL FROM is answered 530 and nothing is stored: the sender is no identity."""
    for tls in (client_tls, None):
        with connect(tls_receiver.port, tls) as client, \
                pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.send_message(message("scan-b@office.example"), "scan-b@office.example", TO)
        assert refused.value.smtp_code == 530
    assert nothing_arrived(spool, accepted)


def test_auth_without_starttls_is_refused_when_a_certificate_is_configured(
        tls_receiver: EmailReceiver, accepted: Accepted, spool: Spool) -> None:
    """Given a certificate, when a scanner skips STARTTLS, then AUTH is not offered, and forcing
    it gets 538 before any password is read: passwords never cross in clear text."""
    with connect(tls_receiver.port, None) as client:
        assert client.has_extn("starttls") and not client.has_extn("auth")
        with pytest.raises(smtplib.SMTPNotSupportedError):
            client.login("mfp-b", "pw-b-Secret!")
        blob = base64.b64encode(b"\0mfp-b\0pw-b-Secret!").decode()
        code, _ = client.docmd("AUTH", f"PLAIN {blob}")
        assert code == 538
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.send_message(message("scan-b@office.example"), "scan-b@office.example", TO)
        assert refused.value.smtp_code == 530
    assert nothing_arrived(spool, accepted)


def test_a_sender_outside_the_devices_allow_list_is_refused_even_when_authenticated(
        tls_receiver: EmailReceiver, client_tls: ssl.SSLContext, accepted: Accepted,
        spool: Spool) -> None:
    """Given mfp-a limited to its own address, when it mails from another device's address or a
    stranger's, then MAIL FROM gets 550; so does mfp-b from mfp-a's address."""
    for username, password, sender in [("mfp-a", "pw-a-Secret!", "scan-b@office.example"),
                                       ("mfp-a", "pw-a-Secret!", "someone@elsewhere.example"),
                                       ("mfp-b", "pw-b-Secret!", "scan-a@office.example")]:
        with connect(tls_receiver.port, client_tls) as client:
            log_in(client, "PLAIN", username, password)
            with pytest.raises(smtplib.SMTPSenderRefused) as refused:
                client.send_message(message(sender), sender, TO)
            assert refused.value.smtp_code == 550, (username, sender)
    assert nothing_arrived(spool, accepted)


def test_allow_plain_auth_lets_a_scanner_without_tls_log_in(
        start: Callable[..., EmailReceiver], accepted: Accepted) -> None:
    """Given accounts, no certificate and allow_plain_auth, when a scanner that cannot do TLS
    logs in and mails, then AUTH is offered in clear text and the scan is accepted with its
    device; a device with no sender list at all may use any address."""
    receiver = start(accounts=[{"device": "mfp-lan", "username": "lan", "password": "pw-lan"}],
                     allow_plain_auth=True)
    with connect(receiver.port, None) as client:
        assert client.has_extn("auth") and not client.has_extn("starttls")
        log_in(client, "LOGIN", "lan", "pw-lan")
        client.send_message(message("whatever@scanner.lan"), "whatever@scanner.lan", TO)
    calls = wait_for(lambda: accepted.calls)
    assert [c["device"] for c in calls] == ["mfp-lan"]


def test_accounts_need_a_certificate_unless_plain_auth_is_allowed(cert: tuple[Path, Path]) -> None:
    """Given accounts, a configuration without a certificate and without allow_plain_auth is
    refused at start with a message that says what to do; usernames must be unique."""
    with pytest.raises(ValidationError, match="need a certificate"):
        EmailConfig(accounts=ACCOUNTS)
    with pytest.raises(ValidationError, match="unique"):
        EmailConfig(accounts=[ACCOUNTS[0], ACCOUNTS[0]], certificate=cert[0])
    with pytest.raises(ValidationError, match="accounts, or at least the allowed senders"):
        EmailConfig()
    assert EmailConfig(accounts=ACCOUNTS, certificate=cert[0], private_key=cert[1]).accounts[0].senders \
        == ["scan-a@office.example"]


def test_without_accounts_the_sender_list_still_works_and_a_warning_says_so(
        start: Callable[..., EmailReceiver], cert: tuple[Path, Path], client_tls: ssl.SSLContext,
        accepted: Accepted, caplog: pytest.LogCaptureFixture) -> None:
    """Given only a sender allow-list (the old configuration) and a certificate, when sohoa starts
    it warns that e-mail intake is unauthenticated; AUTH is not offered (502 if tried), and an
    allowed sender's scan is accepted with the device the list gives it."""
    with caplog.at_level(logging.WARNING, logger="scanners.email"):
        receiver = start(senders={"Scanner@office.example": "mfp-old"}, certificate=cert[0],
                         private_key=cert[1])
    assert any("unauthenticated" in r.getMessage() for r in caplog.records)
    with connect(receiver.port, client_tls) as client:
        assert not client.has_extn("auth")
        code, _ = client.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0x\0y").decode())
        assert code == 502
        client.send_message(message("scanner@office.example"), "scanner@office.example", TO)
    calls = wait_for(lambda: accepted.calls)
    assert [c["device"] for c in calls] == ["mfp-old"]
