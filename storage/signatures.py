"""Validation of the digital signatures in a stored PDF (storage/integrity.py calls it).

For each signature: integrity (the signed bytes hash to what was signed, and nothing but
validation data was added after it), the certificate chain to the configured trust roots
(`SOHOA_TRUST_ROOTS`), and the certificate's validity at signing time (the timestamp's time for
B-T, else the time the signer claims). Nothing is fetched from the network: a verification must
give the same answer offline.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)
# pyHanko logs each failed path search with a traceback at WARNING; an untrusted or broken
# signature is a finding we report, not a fault of this process.
for _name in ("pyhanko.sign.validation", "pyhanko_certvalidator", "pyhanko.sign.general"):
    logging.getLogger(_name).setLevel(logging.CRITICAL)


@dataclass(frozen=True)
class SignatureCheck:
    field: str
    signer: str  # SHA-256 fingerprint of the signing certificate
    subject: str
    signed_at: str | None  # ISO 8601
    timestamped: bool
    intact: bool  # the signed bytes are unchanged, and only validation data came after
    trusted: bool | None  # chain to a trust root, valid at signing time; None: no roots configured
    detail: str

    @property
    def problem(self) -> str:
        """ok | signature_broken | signature_untrusted"""
        if not self.intact:
            return "signature_broken"
        if self.trusted is False:
            return "signature_untrusted"
        return "ok"

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "problem": self.problem}


def load_trust_roots(files: list[Path]) -> list[Any]:
    """asn1crypto certificates of PEM (or DER) files; what cannot be read is logged, skipped."""
    from asn1crypto import pem
    from asn1crypto import x509 as asn1_x509

    roots = []
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as e:
            log.warning("trust root %s cannot be read: %s", path, e.strerror)
            continue
        blobs = [der for _, _, der in pem.unarmor(data, multiple=True)] if pem.detect(data) \
            else [data]
        for der in blobs:
            try:
                cert = asn1_x509.Certificate.load(der)
                cert.native  # noqa: B018 (parses now: a bad file fails here, not later)
            except ValueError:
                log.warning("trust root %s holds something that is not a certificate", path)
                continue
            roots.append(cert)
    return roots


def outside_event_loop(work: Callable[[], T]) -> T:
    """pyHanko runs event loops of its own (asyncio.run): from a thread that already runs one
    (an async caller), the work runs in a thread of its own."""
    import asyncio  # here: `sohoa ingest` imports this module and runs no event loop

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return work()
    with ThreadPoolExecutor(1, thread_name_prefix="sohoa-pyhanko") as pool:
        return pool.submit(work).result()


def check_pdf(data: bytes, trust_roots: list[Any]) -> list[SignatureCheck]:
    """One check per signature of the PDF (none: an empty list). Raises ValueError when the
    file cannot be read as a PDF at all."""
    from pyhanko.pdf_utils.reader import PdfFileReader

    try:
        reader = PdfFileReader(io.BytesIO(data), strict=False)
        signatures = reader.embedded_signatures
    except Exception as e:
        raise ValueError(f"not a readable PDF: {type(e).__name__}") from e
    return outside_event_loop(lambda: [_check(sig, trust_roots) for sig in signatures])


def _check(sig: Any, trust_roots: list[Any]) -> SignatureCheck:
    from pyhanko.sign.diff_analysis import ModificationLevel
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    name = str(sig.field_name)
    try:
        cert = sig.signer_cert
        fp, subject = hashlib.sha256(cert.dump()).hexdigest(), cert.subject.human_friendly
    except Exception:
        fp, subject = "", ""
    try:
        claimed = sig.self_reported_timestamp
    except Exception:
        claimed = None
    roots = trust_roots or []
    try:
        first = validate_pdf_signature(sig, ValidationContext(
            trust_roots=roots, allow_fetching=False, revocation_mode="soft-fail"),
            ts_validation_context=ValidationContext(trust_roots=roots, allow_fetching=False,
                                                    revocation_mode="soft-fail"))
        at: datetime | None = (first.timestamp_validity.timestamp if first.timestamp_validity
                               else claimed)
        status = first
        if roots and at is not None:  # the chain as it was when the document was signed
            status = validate_pdf_signature(sig, ValidationContext(
                trust_roots=roots, moment=at, allow_fetching=False, revocation_mode="soft-fail"),
                ts_validation_context=ValidationContext(trust_roots=roots, allow_fetching=False,
                                                        revocation_mode="soft-fail"))
    except Exception as e:
        return SignatureCheck(name, fp, subject, claimed.isoformat() if claimed else None, False,
                              False, None if not roots else False,
                              f"cannot be validated: {type(e).__name__}: {str(e)[:200]}")
    level = status.modification_level
    untouched = level in (ModificationLevel.NONE, ModificationLevel.LTA_UPDATES) and \
        status.docmdp_ok is not False
    intact = bool(status.intact and status.valid and untouched)
    trusted = bool(status.trusted) if roots else None
    ts = status.timestamp_validity
    if ts is not None and roots and not ts.trusted:
        trusted = False
    parts = ["intact" if status.intact and status.valid else "signature bytes do not match",
             "" if untouched else f"changed after signing ({level.name.lower() if level else '?'})",
             {None: "trust not checked (no trust roots)", True: "trusted",
              False: f"untrusted ({status.trust_problem_indic or 'timestamp'})"}[trusted]]
    return SignatureCheck(name, fp, subject, at.isoformat() if at else None, ts is not None,
                          intact, trusted, "; ".join(p for p in parts if p))
