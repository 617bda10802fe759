"""The agency signs: one thin wrapper around pyHanko, with typed errors.

    sign_document(agency, pdf)   -> (signed pdf, info)     for any caller (results, components)
    AgencySigning(url, signing, offset)  the same, with the signing section and signer registry
                                 given once (`from_settings`; ingest/services.py builds it)
    Sign(signing)                the dossier stage: signs work.pdf and every PDF of work.copies

Before signing, the digitization note (DOMAIN.md "Digitization that counts") goes at the top right
of page 1 (ocr/note.py: real text, embedded font); then an invisible PAdES signature is added as an
incremental update, so the PDF/A-2b document stays PDF/A-2b: B-B, or B-T with a signature timestamp
when `SOHOA_TSA_URL` is set. With trust roots configured, the chain and whatever revocation data
can be fetched (OCSP, CRL) are embedded; when they cannot be, the document is signed without them.

Errors (storage/errors.py conventions). A signing failure never loses page data: the page PDFs
are stored, the version is not, and the batch's finishing step is what fails.
- `SignerUnavailable` is TRANSIENT (an `Unavailable`, dependency "signer"): the token is not
  plugged in, its module cannot be loaded, the timestamp server does not answer. The batch waits
  and is tried again by itself, like for any dependency that is down.
- `SignerRefused` is not transient: a wrong PIN or password, a key or certificate not found, a
  certificate expired. Trying again by itself would not help and would lock a USB token after a
  few wrong PINs, so the batch fails with the reason; staff fix the signer (`sohoa signer add`)
  and run `sohoa batch retry`.
No error message ever holds a password or a PIN.
"""

from __future__ import annotations

import hashlib
import io
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from ingest import metrics
from ingest.settings import Settings, SigningConfig, get_settings
from ingest.stages import DossierWork
from ocr import note as notemod
from storage.errors import Unavailable
from storage.signatures import load_trust_roots, outside_event_loop
from storage.signers import SignerEntry, Signers

if TYPE_CHECKING:  # certificates come from pyHanko: its types, not its import at start-up
    from asn1crypto import x509 as asn1_x509

log = logging.getLogger(__name__)

NOTE_TITLE = "Bản sao điện tử được số hóa từ bản chính"


class SigningError(Exception):
    """The document could not be signed; the message names what, never a secret."""


class SignerUnavailable(SigningError, Unavailable):
    """The signer cannot be reached right now (token absent, module missing, TSA down)."""

    dependency = "signer"


class SignerRefused(SigningError):
    """The signer refuses as configured (wrong PIN/password, no such key, expired certificate):
    a person must fix it."""


@dataclass(frozen=True)
class SignatureInfo:
    status: str  # signed | unsigned
    signer: str | None = None  # SHA-256 fingerprint of the signing certificate
    level: str | None = None  # B-B | B-T
    at: str | None = None  # ISO 8601, the agency's local time (+07:00)
    name: str | None = None  # the agency name printed in the note

    def to_manifest(self, documents: list[str] | None = None) -> dict[str, Any]:
        if self.status != "signed":
            return {"status": self.status}
        found: dict[str, Any] = {"status": "signed", "signer": self.signer, "level": self.level,
                                 "at": self.at, "name": self.name}
        if documents is not None:
            found["documents"] = documents
        return found


UNSIGNED = SignatureInfo("unsigned")


# ---- certificates ---------------------------------------------------------------------------


def fingerprint(cert: asn1_x509.Certificate) -> str:
    return hashlib.sha256(cert.dump()).hexdigest()


def subject_name(cert: asn1_x509.Certificate) -> str:
    """The certificate subject's organisation or common name: the default name in the note."""
    native = cert.subject.native
    return str(native.get("common_name") or native.get("organization_name")
               or cert.subject.human_friendly)


@dataclass(frozen=True)
class LoadedCertificate:
    fingerprint: str
    subject: str
    name: str
    not_after: datetime


def describe_certificate(cert: asn1_x509.Certificate) -> LoadedCertificate:
    return LoadedCertificate(fingerprint(cert), cert.subject.human_friendly, subject_name(cert),
                             cert["tbs_certificate"]["validity"]["not_after"].native)


# ---- opening a signer -----------------------------------------------------------------------


def load_pkcs12(data: bytes, password: SecretStr | None) -> Any:
    """A pyHanko signer of PKCS#12 data; SignerRefused on a wrong password or a bad file."""
    from pyhanko.sign.signers import SimpleSigner

    secret = password.get_secret_value().encode("utf-8") if password else None
    try:
        return SimpleSigner.load_pkcs12_data(data, other_certs=[], passphrase=secret)
    except (ValueError, TypeError):
        raise SignerRefused("the PKCS#12 file could not be opened: wrong password, or not a "
                            "PKCS#12 file with a key and its certificate") from None


@contextmanager
def pkcs11_signer(module: str, token_label: str, key_label: str,
                  pin: SecretStr | None) -> Iterator[Any]:
    """A pyHanko signer of a key on a PKCS#11 token, its session open while in the block."""
    import pkcs11
    from pkcs11 import exceptions as p11e
    from pyhanko.config.pkcs11 import TokenCriteria
    from pyhanko.sign.pkcs11 import PKCS11Signer, open_pkcs11_session

    where = f"token {token_label!r} (module {module})"
    refused = (p11e.PinIncorrect, p11e.PinInvalid, p11e.PinLenRange, p11e.PinLocked,
               p11e.PinExpired, p11e.UserPinNotInitialized)
    try:
        session = open_pkcs11_session(module, token_criteria=TokenCriteria(label=token_label),
                                      user_pin=pin.get_secret_value() if pin else None)
    except refused as e:
        raise SignerRefused(f"{where}: the PIN was refused ({type(e).__name__}); set it again "
                            "with `sohoa signer add ... --pin-stdin`") from None
    except (p11e.PKCS11Error, pkcs11.PKCS11Error, OSError, RuntimeError) as e:
        raise SignerUnavailable(f"{where} is not available: {_first_line(e)}") from None
    except Exception as e:  # pyHanko's "no token matching" and module loading errors
        raise SignerUnavailable(f"{where} is not available: {_first_line(e)}") from None
    try:
        signer = PKCS11Signer(session, key_label=key_label, cert_label=key_label)
        try:
            signer.signing_cert  # noqa: B018 (pulled from the token now: a missing one fails here)
        except Exception as e:
            raise SignerRefused(f"{where}: no key and certificate labelled {key_label!r}: "
                                f"{_first_line(e)}") from None
        yield signer
    finally:
        try:
            session.close()
        except Exception:  # a token pulled out meanwhile: nothing left to close
            log.debug("closing the PKCS#11 session failed", exc_info=True)


@contextmanager
def open_signer(entry: SignerEntry, secret: SecretStr | None) -> Iterator[Any]:
    """The pyHanko signer of a registered signer."""
    if entry.kind == "pkcs12":
        yield _pkcs12_signer(entry, secret)
        return
    # One session on a token at a time in this process: a token is one device (a USB key, an
    # HSM slot), and sessions opened side by side (a batch's dossiers are written three at a
    # time) failed on SoftHSM with a GeneralError read as a wrong key.
    with _TOKEN_IN_USE, pkcs11_signer(entry.module or "", entry.token_label or "",
                                      entry.key_label or "", secret) as signer:
        yield signer


_TOKEN_IN_USE = threading.RLock()


_PKCS12_LOADED: dict[tuple[str, int, int, str], Any] = {}


def _pkcs12_signer(entry: SignerEntry, secret: SecretStr | None) -> Any:
    """The PKCS#12 signer, decrypted once per process while its file and secret stay the same
    (decrypting takes most of a second; the key is in this process's memory either way)."""
    path = Path(entry.pkcs12_path or "")
    try:
        found = path.stat()
        data = path.read_bytes()
    except OSError:
        raise SignerRefused(f"the PKCS#12 copy of agency {entry.agency} is missing from the "
                            "secrets directory: add the signer again") from None
    digest = hashlib.sha256(secret.get_secret_value().encode() if secret else b"").hexdigest()
    key = (str(path), found.st_mtime_ns, found.st_size, digest)
    if key not in _PKCS12_LOADED:
        signer = load_pkcs12(data, secret)
        for old in [k for k in _PKCS12_LOADED if k[0] == key[0]]:
            del _PKCS12_LOADED[old]  # a replaced signer's key is not kept in memory
        _PKCS12_LOADED[key] = signer
    return _PKCS12_LOADED[key]


def _first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0][:200] or type(e).__name__


# ---- signing ------------------------------------------------------------------------------


def local_now(offset: str) -> datetime:
    """Now, in the agency's time zone (`+07:00`), to the second."""
    sign = -1 if offset.startswith("-") else 1
    hours, _, minutes = offset.lstrip("+-").partition(":")
    zone = timezone(sign * timedelta(hours=int(hours), minutes=int(minutes or 0)))
    return datetime.now(UTC).astimezone(zone).replace(microsecond=0)


def note_lines(name: str, at: datetime) -> list[str]:
    return [NOTE_TITLE, f"Cơ quan: {name}", f"Thời gian: {at.isoformat()}"]


def has_signatures(pdf: bytes) -> bool:
    from pyhanko.pdf_utils.reader import PdfFileReader

    try:
        return bool(PdfFileReader(io.BytesIO(pdf), strict=False).embedded_signatures)
    except Exception:
        return False


def sign_pdf(pdf: bytes, signer: Any, name: str, at: datetime, tsa_url: str | None = None,
             trust_roots: list[asn1_x509.Certificate] | None = None,
             tsa_timeout_s: float = 20.0) -> bytes:
    """`pdf` with the note on page 1 (unless it already carries signatures, which a rewrite
    would break) and an invisible PAdES signature added as an incremental update."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers
    from pyhanko.sign.timestamps import HTTPTimeStamper
    from pyhanko.sign.timestamps.common_utils import TimestampRequestError

    cert = signer.signing_cert
    not_before = cert["tbs_certificate"]["validity"]["not_before"].native
    not_after = cert["tbs_certificate"]["validity"]["not_after"].native
    if not not_before <= at <= not_after:
        raise SignerRefused(f"the signing certificate is valid from {not_before:%Y-%m-%d} to "
                            f"{not_after:%Y-%m-%d}, not at {at.isoformat()}")
    if not has_signatures(pdf):
        try:
            # pyHanko names itself as producer in the document info and the XMP, in two
            # different ways unless both already say just that (PDF/A wants them equal).
            from pyhanko.pdf_utils.metadata.model import VENDOR

            pdf = notemod.add_note(pdf, note_lines(name, at), producer=VENDOR)
        except notemod.NoteError as e:
            raise SignerRefused(f"the digitization note cannot be set: {e}") from None
    timestamper = HTTPTimeStamper(tsa_url, timeout=tsa_timeout_s) if tsa_url else None

    def attempt(embed: bool) -> bytes:
        from pyhanko_certvalidator import ValidationContext

        context = ValidationContext(trust_roots=trust_roots, allow_fetching=True,
                                    revocation_mode="soft-fail") if embed else None
        meta = signers.PdfSignatureMetadata(
            field_name=f"Sohoa-{at:%Y%m%dT%H%M%S}", md_algorithm="sha256",
            subfilter=fields.SigSeedSubFilter.PADES, name=name, reason=NOTE_TITLE,
            embed_validation_info=embed, validation_context=context)
        writer = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
        out = io.BytesIO()
        signers.PdfSigner(meta, signer, timestamper=timestamper,
                          new_field_spec=fields.SigFieldSpec(sig_field_name=meta.field_name)
                          ).sign_pdf(writer, output=out)
        return out.getvalue()

    try:
        if trust_roots:
            try:
                return outside_event_loop(lambda: attempt(embed=True))
            except (TimestampRequestError, SigningError):
                raise
            except Exception as e:  # the chain or its revocation data could not be had
                log.warning("signing without embedded validation data: %s", _first_line(e))
        return outside_event_loop(lambda: attempt(embed=False))
    except TimestampRequestError as e:
        metrics.signature_failed("unavailable")
        raise SignerUnavailable(f"timestamp server {tsa_url}: {_first_line(e)}") from None
    except SigningError as e:
        metrics.signature_failed("unavailable" if isinstance(e, SignerUnavailable) else "refused")
        raise
    except Exception as e:
        if _is_token_gone(e):
            metrics.signature_failed("unavailable")
            raise SignerUnavailable(f"the token stopped answering: {_first_line(e)}") from None
        metrics.signature_failed("refused")
        raise SignerRefused(f"signing failed: {type(e).__name__}: {_first_line(e)}") from None


def _is_token_gone(e: BaseException) -> bool:
    try:
        from pkcs11 import exceptions as p11e
    except ImportError:
        return False
    gone = (p11e.DeviceRemoved, p11e.TokenNotPresent, p11e.DeviceError, p11e.SessionClosed,
            p11e.SessionHandleInvalid)
    while e is not None:
        if isinstance(e, (*gone, ConnectionError)):
            return True
        e = e.__cause__ or e.__context__  # type: ignore[assignment]
    return False


# ---- the service and the stage --------------------------------------------------------------


@cache
def _registry(url: str, secrets_dir: Path) -> Signers:
    return Signers(url, secrets_dir)


class AgencySigning:
    """Signs documents for an agency with its registered signer (or leaves them unsigned).
    `catalog_url`: the database that holds the signer registry; `timezone_offset`: the agency's
    time, printed in the note."""

    def __init__(self, catalog_url: str, config: SigningConfig,
                 timezone_offset: str = "+07:00") -> None:
        self.catalog_url = catalog_url
        self.config = config
        self.timezone_offset = timezone_offset

    @classmethod
    def from_settings(cls, settings: Settings) -> AgencySigning:
        return cls(settings.storage.catalog_url, settings.signing, settings.timezone_offset)

    @property
    def signers(self) -> Signers:
        """The signer registry, opened at the first signature (a page worker never opens it)."""
        assert self.config.secrets_dir is not None, "Settings fills in the secrets dir"
        return _registry(self.catalog_url, self.config.secrets_dir)

    def signer_of(self, agency: str) -> SignerEntry | None:
        return self.signers.get(agency)

    def sign_many(self, agency: str, documents: dict[str, bytes]
                  ) -> tuple[dict[str, bytes], SignatureInfo]:
        """Every document signed with the agency's signer, opened once (one PIN login), with
        one time in every note; unchanged and UNSIGNED when the agency has no signer."""
        entry = self.signer_of(agency)
        if entry is None:
            return documents, UNSIGNED
        at = local_now(self.timezone_offset)
        roots = load_trust_roots(self.config.trust_root_files)
        tsa = self.config.tsa_url
        signed = {}
        with open_signer(entry, self.signers.secret(agency)) as signer:
            found = fingerprint(signer.signing_cert)
            if found != entry.fingerprint:
                raise SignerRefused(f"the key of agency {agency} now holds certificate "
                                    f"{found[:16]}…, not the registered {entry.fingerprint[:16]}…: "
                                    "add the signer again")
            for key, pdf in documents.items():
                signed[key] = sign_pdf(pdf, signer, entry.name, at, tsa, roots,
                                       self.config.tsa_timeout_s)
        log.info("signed %d document(s) for agency %s with %s", len(signed), agency, found[:16])
        return signed, SignatureInfo("signed", found, "B-T" if tsa else "B-B", at.isoformat(),
                                     entry.name)

    def sign_document(self, agency: str, pdf: bytes) -> tuple[bytes, SignatureInfo]:
        signed, info = self.sign_many(agency, {"document": pdf})
        return signed["document"], info


def sign_document(agency: str, pdf: bytes, settings: Settings | None = None
                  ) -> tuple[bytes, SignatureInfo]:
    """The PDF signed with `agency`'s signer, and what was done (`status` signed or unsigned).
    Raises SignerUnavailable (transient) or SignerRefused. Blocking (pyHanko runs its own event
    loop): call it from a worker or a thread, not from inside a running event loop."""
    return AgencySigning.from_settings(settings or get_settings()).sign_document(agency, pdf)


class Sign:
    """Dossier stage after BuildPdfA: the dossier PDF and every PDF copy signed by the dossier's
    agency; `manifest["signature"]` says so, or `{"status": "unsigned"}`."""

    name = "sign"

    def __init__(self, signing: AgencySigning) -> None:
        self.signing = signing

    def __call__(self, work: DossierWork) -> None:
        assert work.pdf is not None, "the sign stage runs after the PDF is built"
        documents = {"dossier.pdf": work.pdf}
        documents.update({k: v for k, v in work.copies.items() if k.lower().endswith(".pdf")})
        signed, info = self.signing.sign_many(work.agency, documents)
        work.pdf = signed.pop("dossier.pdf")
        work.copies.update(signed)
        work.manifest["signature"] = info.to_manifest(
            sorted(documents) if info.status == "signed" else None)

