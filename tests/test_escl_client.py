"""sohoa's eSCL client against the emulated scanner (tests/escl_emulator.py), which behaves like the
devices of ../shared/domain/ESCL.md and is itself checked against sane-airscan."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from scanners.escl import (
    CertificateMismatch,
    DeviceBusy,
    DeviceUnreachable,
    EsclClient,
    FeederEmpty,
    Unsupported,
)
from scanners.escl_xml import ScanRequest
from tests.escl_emulator import EmulatorConfig, EsclEmulator, numbered_pages


def scan(emulator: EsclEmulator, request: ScanRequest | None = None, **client_options):
    pages: list[bytes] = []
    client_options.setdefault("busy_wait", 0.01)
    with EsclClient(emulator.url, **client_options) as client:
        outcome = client.scan(request or ScanRequest(), pages.append)
    return outcome, pages


@pytest.mark.parametrize("location", ["absolute", "relative", "lowercase"])
@pytest.mark.parametrize("end_code", [404, 409, 410])
def test_a_feeder_job_yields_every_page_in_order_and_is_deleted(location: str, end_code: int) -> None:
    """Given 3 sheets in the feeder, whatever the Location spelling and the end-of-job code, when
    scanned, then the 3 pages arrive in order, the job is complete and deleted."""
    sheets = numbered_pages(3)
    config = EmulatorConfig(pages=sheets, location=location, end_code=end_code)
    with EsclEmulator(config) as emulator:
        outcome, pages = scan(emulator)
        assert pages == sheets
        assert (outcome.pages, outcome.complete, outcome.problem) == (3, True, None)
        assert len(emulator.deleted) == 1


def test_the_requested_job_reaches_the_scanner() -> None:
    """Default: 300 dpi grayscale JPEG from the feeder, A4."""
    with EsclEmulator(EmulatorConfig(pages=numbered_pages(1))) as emulator:
        scan(emulator)
        sent = emulator.settings[-1]
    flat = str(sent)
    assert "Feeder" in flat and "Grayscale8" in flat and "image/jpeg" in flat and "300" in flat


def test_busy_spells_are_waited_out() -> None:
    """Given a scanner answering 503 before the job and before each page, then all pages arrive."""
    config = EmulatorConfig(pages=numbered_pages(3), busy_on_post=2, busy_before_page=2)
    with EsclEmulator(config) as emulator:
        outcome, pages = scan(emulator)
        assert len(pages) == 3 and outcome.complete
        assert any("ScannerStatus" in r for r in emulator.requests)  # polled while waiting


def test_a_scanner_that_stays_busy_is_reported_busy() -> None:
    config = EmulatorConfig(pages=numbered_pages(1), busy_on_post=50)
    with EsclEmulator(config) as emulator, pytest.raises(DeviceBusy):
        scan(emulator, busy_retries=3)


def test_a_jam_keeps_the_pages_received_and_says_the_job_is_incomplete() -> None:
    """Given a jam after 2 of 5 sheets, then 2 pages are kept, the outcome is incomplete with the
    jam as its reason, and the job is still deleted."""
    config = EmulatorConfig(pages=numbered_pages(5), jam_after=2)
    with EsclEmulator(config) as emulator:
        outcome, pages = scan(emulator)
        assert len(pages) == 2 and not outcome.complete
        assert outcome.problem == "jam" and "jam" in outcome.message.lower()
        assert outcome.job_state == "Aborted"
        assert len(emulator.deleted) == 1


@pytest.mark.parametrize(("reason", "problem"), [("ScannerAdfMispick", "misfeed"),
                                                  ("ScannerAdfDoorOpen", "door_open")])
def test_other_aborts_name_their_cause(reason: str, problem: str) -> None:
    config = EmulatorConfig(pages=numbered_pages(4), jam_after=1, abort_reason=reason)
    with EsclEmulator(config) as emulator:
        outcome, pages = scan(emulator)
    assert (len(pages), outcome.complete, outcome.problem) == (1, False, problem)


def test_an_empty_feeder_is_a_clear_error_before_any_job() -> None:
    with EsclEmulator(EmulatorConfig(pages=[], feeder_empty=True)) as emulator:
        with pytest.raises(FeederEmpty, match="feeder is empty"):
            scan(emulator)
        assert emulator.jobs == {}


def test_duplex_gives_both_sides_of_each_sheet() -> None:
    config = EmulatorConfig(pages=numbered_pages(2), duplex=True)
    with EsclEmulator(config) as emulator:
        outcome, pages = scan(emulator, ScanRequest(duplex=True))
    assert outcome.pages == 4 and pages[0] == config.pages[0] and pages[2] == config.pages[1]


def test_duplex_on_a_simplex_scanner_is_refused_before_scanning() -> None:
    with EsclEmulator(EmulatorConfig(pages=numbered_pages(2), duplex=False)) as emulator:
        with pytest.raises(Unsupported, match="duplex"):
            scan(emulator, ScanRequest(duplex=True))
        assert emulator.settings == []


def test_the_platen_gives_one_page() -> None:
    with EsclEmulator(EmulatorConfig(pages=numbered_pages(3))) as emulator:
        outcome, _ = scan(emulator, ScanRequest(source="platen"))
        assert outcome.pages == 1 and outcome.complete and len(emulator.deleted) == 1


def test_a_resolution_the_scanner_lacks_becomes_the_nearest_it_has() -> None:
    config = EmulatorConfig(pages=numbered_pages(1), resolutions=(150, 300, 600))
    with EsclEmulator(config) as emulator:
        outcome, _ = scan(emulator, ScanRequest(resolution=400))
        assert outcome.resolution == 300 and "300" in str(emulator.settings[-1])


def test_an_unreachable_scanner_fails_fast_and_clearly() -> None:
    with EsclEmulator(EmulatorConfig(pages=numbered_pages(1))) as emulator:
        url = emulator.url
    with pytest.raises(DeviceUnreachable, match="cannot reach"), EsclClient(url, timeout=2) as client:
        client.capabilities()


def test_a_scan_can_be_canceled_between_pages() -> None:
    cancel = threading.Event()
    config = EmulatorConfig(pages=numbered_pages(5))
    with EsclEmulator(config) as emulator, EsclClient(emulator.url) as client:
        pages: list[bytes] = []

        def on_page(data: bytes) -> None:
            pages.append(data)
            cancel.set()

        outcome = client.scan(ScanRequest(), on_page, cancel)
        assert len(pages) == 1 and outcome.problem == "canceled" and len(emulator.deleted) == 1


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> tuple[Path, Path, Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    for name in ("a", "b"):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", f"/CN=scanner-{name}.local", "-keyout", str(folder / f"{name}.key"),
                        "-out", str(folder / f"{name}.crt")], check=True, capture_output=True)
    return folder / "a.crt", folder / "a.key", folder / "b.crt", folder / "b.key"


def test_an_https_scanner_with_a_self_signed_certificate_is_scanned_over_its_pinned_certificate(
        certificates) -> None:
    cert, key, _, _ = certificates
    config = EmulatorConfig(pages=numbered_pages(2), certfile=cert, keyfile=key)
    with EsclEmulator(config) as emulator:
        outcome, pages = scan(emulator, pinned_cert=cert.read_text())
    assert len(pages) == 2 and outcome.complete


def test_an_https_scanner_presenting_another_certificate_is_refused(certificates) -> None:
    cert, _, other_cert, other_key = certificates
    config = EmulatorConfig(pages=numbered_pages(2), certfile=other_cert, keyfile=other_key)
    with EsclEmulator(config) as emulator, pytest.raises(CertificateMismatch):
        scan(emulator, pinned_cert=cert.read_text())


def test_a_scanner_url_given_without_its_escl_root_is_tried_with_it() -> None:
    """Given a scanner whose eSCL root is /eSCL/, when its URL is given as http://host:port/ only
    (a common mistake: the root answers 404), then the client finds /eSCL/ and the scan works."""
    sheets = numbered_pages(2)
    with EsclEmulator(EmulatorConfig(pages=sheets)) as emulator:
        bare = emulator.url.removesuffix("eSCL/")
        assert bare != emulator.url
        pages: list[bytes] = []
        with EsclClient(bare, busy_wait=0.01) as client:
            outcome = client.scan(ScanRequest(), pages.append)
            assert client.base_url == emulator.url
        assert pages == sheets and outcome.complete


def test_a_url_that_is_no_escl_scanner_at_all_is_still_an_error() -> None:
    """Given a URL under which neither the path nor /eSCL/ answers, then capabilities fail with
    the status the device answered."""
    from scanners.escl import EsclError

    with EsclEmulator(EmulatorConfig(pages=numbered_pages(1))) as emulator:
        wrong = emulator.url.removesuffix("eSCL/") + "nothing/"
        with EsclClient(wrong) as client, pytest.raises(EsclError, match="404"):
            client.capabilities()


def test_finding_a_configured_scanner_browses_no_mdns(tmp_path: Path, monkeypatch) -> None:
    """Given discovery on and a configured scanner, when it is asked for by name, then it is
    found without browsing mDNS (seconds spent for nothing); an unknown name still browses."""
    from scanners.config import ScannerConfig
    from scanners.devices import Scanners

    browsed: list[float] = []
    with EsclEmulator(EmulatorConfig(pages=numbered_pages(1))) as emulator:
        scanners = Scanners([ScannerConfig(url=emulator.url, name="quầy 1")], tmp_path)
        monkeypatch.setattr(scanners, "_discover", lambda: browsed.append(1) or [])
        device, _ = scanners.find("QUẦY 1")
        assert (device.url, browsed) == (emulator.url, [])
        with pytest.raises(KeyError):
            scanners.find("quầy 9")
        assert browsed == [1]
