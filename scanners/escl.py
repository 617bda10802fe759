"""An eSCL (AirScan) client: one scan job, pulled page by page, as real devices behave.

What devices do that the specification does not say (../shared/domain/ESCL.md): `Location` may be
relative or spelled in lowercase; a feeder job ends with 404, 409 or 410; 503 means "not yet";
an empty 200 follows a paper jam; only the final JobState tells whether the stack went through.
Every request has a timeout, and the job is always deleted, even when the scan fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import httpx

from scanners.escl_xml import (
    Capabilities,
    EsclXmlError,
    ScanRequest,
    Status,
    parse_capabilities,
    parse_status,
    scan_settings,
)

log = logging.getLogger(__name__)

END_OF_JOB = (404, 409, 410)

# AdfState values and the problem they mean for the staff at the scanner.
ADF_PROBLEMS = {
    "ScannerAdfJam": ("jam", "Paper jam in the feeder: clear it and scan the remaining pages."),
    "ScannerAdfMispick": ("misfeed", "The feeder did not pick up a sheet: check the stack."),
    "ScannerAdfMultipickDetected": ("misfeed", "Several sheets went through at once: rescan them."),
    "ScannerAdfDoorOpen": ("door_open", "The feeder cover is open: close it and scan again."),
    "ScannerAdfHatchOpen": ("door_open", "The feeder cover is open: close it and scan again."),
    "ScannerAdfInputTrayFailed": ("feeder_error", "The feeder reported a fault."),
    "ScannerAdfInputTrayOverloaded": ("feeder_error", "Too many sheets in the feeder."),
}


class EsclError(Exception):
    """A scan that could not be done; `code` is for programs, the message for the staff."""

    code = "device_error"


class DeviceUnreachable(EsclError):
    code = "unreachable"


class DeviceBusy(EsclError):
    code = "busy"


class FeederEmpty(EsclError):
    code = "feeder_empty"


class JobRefused(EsclError):
    code = "refused"


class Unsupported(EsclError):
    code = "unsupported"


class CertificateMismatch(EsclError):
    code = "certificate_changed"


@dataclass
class ScanOutcome:
    pages: int = 0
    complete: bool = True
    problem: str | None = None  # jam, misfeed, door_open, empty_page, connection_lost, ...
    message: str = ""
    job_state: str | None = None
    job_reasons: list[str] = field(default_factory=list)
    adf_state: str | None = None
    resolution: int = 300


def certificate_fingerprint(pem: str) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def fetch_certificate(url: str, timeout: float = 10.0) -> str:
    """The certificate a device presents now (for trust on first use: it is then pinned)."""
    parts = urlsplit(url)
    try:
        return ssl.get_server_certificate((parts.hostname or "", parts.port or 443), timeout=timeout)
    except OSError as e:
        raise DeviceUnreachable(f"cannot reach {parts.netloc}: {e}") from e


def _pinned_context(pem: str) -> ssl.SSLContext:
    """Trusts exactly this certificate: devices use self-signed ones, often for another name."""
    context = ssl.create_default_context(cadata=pem)
    context.check_hostname = False
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    return context


class EsclClient:
    def __init__(self, base_url: str, *, timeout: float = 30.0, pinned_cert: str | None = None,
                 host_header: str | None = None, page_delay: float = 0.0,
                 busy_retries: int = 30, busy_wait: float = 1.0) -> None:
        """`base_url` ends with the resource path (`http://host:port/eSCL/`). HTTPS devices need
        `pinned_cert` (PEM). `host_header` and `page_delay` are for firmware quirks (HP models
        that want `Host: localhost`, Brother models that need a pause between pages)."""
        self.base_url = base_url.rstrip("/") + "/"
        self.busy_retries, self.busy_wait, self.page_delay = busy_retries, busy_wait, page_delay
        verify: ssl.SSLContext | bool = True
        if self.base_url.startswith("https:"):
            if not pinned_cert:
                raise CertificateMismatch("an HTTPS scanner needs its pinned certificate")
            verify = _pinned_context(pinned_cert)
        headers = {"Host": host_header} if host_header else {}
        self.http = httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
                                 verify=verify, headers=headers, follow_redirects=False)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> EsclClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _request(self, method: str, url: str, **kwargs: object) -> httpx.Response:
        try:
            return self.http.request(method, url, **kwargs)  # type: ignore[arg-type]
        except httpx.ConnectError as e:
            if isinstance(e.__context__, ssl.SSLCertVerificationError) or "CERTIFICATE" in str(e):
                raise CertificateMismatch(
                    f"{urlsplit(url).netloc} presented a certificate other than the pinned one") from e
            raise DeviceUnreachable(f"cannot reach {urlsplit(url).netloc}: {e}") from e
        except httpx.TimeoutException as e:
            raise DeviceUnreachable(f"{urlsplit(url).netloc} did not answer in time") from e
        except httpx.HTTPError as e:
            raise DeviceUnreachable(f"{urlsplit(url).netloc}: {e}") from e

    def _get_resource(self, name: str) -> httpx.Response:
        """GET `name` under the eSCL root. A URL given without its root (`http://host:port/`
        instead of `http://host:port/eSCL/`) answers 404: the usual root is tried before the
        scanner is called unreachable, and kept when it answers."""
        response = self._request("GET", self.base_url + name)
        if response.status_code == 404 and not self.base_url.lower().endswith("/escl/"):
            root = self.base_url + "eSCL/"
            retry = self._request("GET", root + name)
            if retry.status_code == 200:
                log.info("%s answers eSCL at %s", self.base_url, root)
                self.base_url = root
                return retry
        return response

    def capabilities(self) -> Capabilities:
        response = self._get_resource("ScannerCapabilities")
        if response.status_code != 200:
            raise EsclError(f"ScannerCapabilities answered {response.status_code}")
        try:
            return parse_capabilities(response.content)
        except EsclXmlError as e:
            raise EsclError(str(e)) from e

    def status(self) -> Status:
        response = self._get_resource("ScannerStatus")
        if response.status_code != 200:
            raise EsclError(f"ScannerStatus answered {response.status_code}")
        try:
            return parse_status(response.content)
        except EsclXmlError as e:
            raise EsclError(str(e)) from e

    # ---- a job --------------------------------------------------------------------------

    def check(self, request: ScanRequest, caps: Capabilities) -> ScanRequest:
        """The request as this device can do it: refused if the source, duplex or colour mode is
        not offered; the resolution moved to the nearest one offered."""
        input_caps = caps.caps_for(request.source, request.duplex)
        if input_caps is None:
            what = "duplex feeder" if request.duplex and request.source == "feeder" else request.source
            raise Unsupported(f"this scanner has no {what}")
        if input_caps.color_modes and request.color_mode not in input_caps.color_modes:
            raise Unsupported(f"colour mode {request.color_mode} is not offered "
                              f"(offered: {', '.join(input_caps.color_modes)})")
        if input_caps.formats and request.document_format not in input_caps.formats:
            raise Unsupported(f"{request.document_format} pages are not offered")
        if input_caps.resolutions and request.resolution not in input_caps.resolutions:
            nearest = min(input_caps.resolutions, key=lambda r: (abs(r - request.resolution), -r))
            request = ScanRequest(**{**request.__dict__, "resolution": nearest})
        return request

    def create_job(self, request: ScanRequest, caps: Capabilities) -> str:
        body = scan_settings(request, caps.caps_for(request.source, request.duplex))
        for _ in range(self.busy_retries + 1):
            response = self._request("POST", self.base_url + "ScanJobs", content=body,
                                     headers={"Content-Type": "text/xml"})
            if response.status_code == 201:
                location = response.headers.get("location")  # httpx: any spelling
                if not location:
                    raise EsclError("the scanner created a job but did not say where")
                return urljoin(self.base_url + "ScanJobs", location).rstrip("/")
            if response.status_code == 503:
                self._wait_not_busy()
                continue
            if response.status_code == 409:
                adf = self._adf_state()
                if request.source == "feeder" and adf in (None, "ScannerAdfEmpty"):
                    raise FeederEmpty("The feeder is empty: load the pages and scan again.")
                _, message = ADF_PROBLEMS.get(adf or "", (None, None))
                raise JobRefused(message or f"the scanner refused the job (feeder: {adf})")
            raise JobRefused(f"the scanner refused the job ({response.status_code})")
        raise DeviceBusy("The scanner stayed busy: try again when it is free.")

    def _adf_state(self) -> str | None:
        try:
            return self.status().adf_state
        except EsclError:
            return None

    def _wait_not_busy(self) -> None:
        time.sleep(self.busy_wait)
        with contextlib.suppress(EsclError):
            self.status()  # what real clients do while waiting; some devices need it to advance

    def delete(self, job_url: str) -> None:
        try:
            self._request("DELETE", job_url)
        except EsclError as e:
            log.warning("could not delete scan job %s: %s", job_url, e)

    def scan(self, request: ScanRequest, on_page: Callable[[bytes], None],
             cancel: threading.Event | None = None) -> ScanOutcome:
        """Runs one job; `on_page` gets each page's bytes as it arrives. Raises before the first
        page (unreachable, busy, feeder empty, refused); after that, trouble ends the job and
        the outcome says what happened, keeping every page received."""
        caps = self.capabilities()
        request = self.check(request, caps)
        job = self.create_job(request, caps)
        outcome = ScanOutcome(resolution=request.resolution)
        try:
            self._pull_pages(job, request, on_page, outcome, cancel)
            self._final_state(job, outcome)
        finally:
            self.delete(job)
        return outcome

    def _pull_pages(self, job: str, request: ScanRequest, on_page: Callable[[bytes], None],
                    outcome: ScanOutcome, cancel: threading.Event | None) -> None:
        busy, lost = 0, 0
        while True:
            if cancel is not None and cancel.is_set():
                outcome.problem, outcome.message = "canceled", "The scan was canceled."
                return
            try:
                response = self._request("GET", job + "/NextDocument")
            except DeviceUnreachable as e:
                lost += 1
                if lost > 3:
                    outcome.problem = "connection_lost"
                    outcome.message = f"The connection to the scanner was lost: {e}"
                    return
                time.sleep(self.busy_wait)
                continue
            lost = 0
            if response.status_code == 200:
                if not response.content:
                    outcome.problem = "empty_page"
                    outcome.message = "The scanner sent an empty page (a jam?): check the feeder."
                    return
                busy = 0
                on_page(response.content)
                outcome.pages += 1
                if request.source == "platen":
                    return
                if self.page_delay:
                    time.sleep(self.page_delay)
            elif response.status_code in END_OF_JOB:
                return
            elif response.status_code == 503:
                busy += 1
                if busy > self.busy_retries:
                    outcome.problem = "timeout"
                    outcome.message = "The scanner stopped sending pages."
                    return
                self._wait_not_busy()
                info = self._job_info(job)
                if info and info[0] in ("Aborted", "Canceled"):
                    return
            else:
                outcome.problem = "device_error"
                outcome.message = f"The scanner answered {response.status_code} for the next page."
                return

    def _job_info(self, job: str) -> tuple[str, list[str], str | None] | None:
        try:
            status = self.status()
        except EsclError:
            return None
        info = status.job(job)
        return (info.state, info.reasons, status.adf_state) if info else ("", [], status.adf_state)

    def _final_state(self, job: str, outcome: ScanOutcome) -> None:
        """JobState Aborted means the stack did not all go through, whatever the page count."""
        info = self._job_info(job)
        if info:
            outcome.job_state, outcome.job_reasons, outcome.adf_state = info[0] or None, info[1], info[2]
        aborted = outcome.job_state in ("Aborted", "Canceled")
        if outcome.adf_state in ADF_PROBLEMS and (aborted or outcome.problem):
            outcome.problem, outcome.message = ADF_PROBLEMS[outcome.adf_state]
        elif aborted and not outcome.problem:
            reasons = ", ".join(outcome.job_reasons) or "no reason given"
            outcome.problem = "aborted"
            outcome.message = f"The scanner aborted the job ({reasons}): some pages may be missing."
        outcome.complete = outcome.problem is None
        if outcome.complete:
            outcome.message = f"{outcome.pages} page(s) scanned."
