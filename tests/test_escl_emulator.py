"""The eSCL scanner emulator (tests/escl_emulator.py), checked directly over HTTP and against real clients.

The emulator only earns its place in tests if real eSCL clients accept it, so it is checked against two
of them: Debian's sane-airscan (0.99.27 in Debian 12) and the built-in `escl` backend of libsane1
(1.2.1), both driven by `scanimage`. What they were seen to do, and what the tests below assert:

sane-airscan (device `airscan:e0:<name>` from `airscan.conf`):
- reads ScannerCapabilities and ScannerStatus, POSTs prefixed ScanSettings (pwg:InputSource), asks
  NextDocument until it fails, reads ScannerStatus, then DELETEs the job, completed or not;
- follows absolute, relative and lowercase `location:` headers;
- ends a feeder batch normally (exit status 0, "Document feeder out of documents") whether the end is
  404, 409 or 410, because ScannerStatus then says ScannerAdfEmpty;
- on 503 (POST or NextDocument) it reads ScannerStatus and retries about a second later;
- a jam (an empty 200, then JobState Aborted and AdfState ScannerAdfJam): scanimage fails with
  "sane_read: Error during device I/O" (exit status 9), not "jammed", keeping the pages before it;
- POST answered 409 with AdfState ScannerAdfEmpty: "Document feeder out of documents", exit status 7;
- accepts a self-signed certificate over HTTPS.

The libsane1 `escl` backend works only with a manual URL as device name (`escl:http://127.0.0.1:PORT`):
its listing and its `escl.conf` `device` lines need a running avahi daemon ("Failed to create client:
Daemon not running"), and it crashes (SIGSEGV) when SANE_CONFIG_DIR has no escl.conf. It never DELETEs
a job, asks for application/pdf on the platen (and decodes the emulator's PDF), and is less tolerant
than real devices require:
- a jam's empty 200 ends its batch silently: exit status 0 with the pages before the jam;
- a 503 on the first NextDocument ends the batch with no page ("Document feeder out of documents");
- a lowercase `location:` header (as AirSane sends) makes it fail: "sane_start: Invalid argument".
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import numpy as np
import pikepdf
import pytest
from PIL import Image

from tests.escl_emulator import (
    PWG_NS,
    SCAN_NS,
    EmulatorConfig,
    EsclEmulator,
    numbered_pages,
    pages_from_dir,
)

NS = {"pwg": PWG_NS, "scan": SCAN_NS}
PAGE_SIZE = (240, 340)
PAGES = numbered_pages(3, size=PAGE_SIZE)


@contextmanager
def emulator(**config: Any) -> Iterator[EsclEmulator]:
    config.setdefault("pages", PAGES)
    with EsclEmulator(EmulatorConfig(**config)) as emu:
        yield emu


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10, verify=False) as c:
        yield c


def scan_settings(
    source: str = "Feeder",
    color: str = "Grayscale8",
    resolution: int = 300,
    fmt: str = "image/jpeg",
    duplex: bool | None = None,
) -> str:
    duplex_xml = "" if duplex is None else f"<scan:Duplex>{str(duplex).lower()}</scan:Duplex>"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<scan:ScanSettings xmlns:scan="{SCAN_NS}" xmlns:pwg="{PWG_NS}">'
        "<pwg:Version>2.0</pwg:Version><scan:Intent>TextAndGraphic</scan:Intent>"
        "<pwg:ScanRegions><pwg:ScanRegion><pwg:ContentRegionUnits>escl:ThreeHundredthsOfInches"
        "</pwg:ContentRegionUnits><pwg:XOffset>0</pwg:XOffset><pwg:YOffset>0</pwg:YOffset>"
        "<pwg:Width>2480</pwg:Width><pwg:Height>3508</pwg:Height></pwg:ScanRegion></pwg:ScanRegions>"
        f"<pwg:InputSource>{source}</pwg:InputSource><scan:ColorMode>{color}</scan:ColorMode>"
        f"<scan:XResolution>{resolution}</scan:XResolution><scan:YResolution>{resolution}</scan:YResolution>"
        f"<pwg:DocumentFormat>{fmt}</pwg:DocumentFormat><scan:DocumentFormatExt>{fmt}</scan:DocumentFormatExt>"
        f"{duplex_xml}</scan:ScanSettings>"
    )


def post_job(client: httpx.Client, emu: EsclEmulator, **settings: Any) -> httpx.Response:
    return client.post(
        emu.url + "ScanJobs", content=scan_settings(**settings), headers={"Content-Type": "text/xml"}
    )


def start_job(client: httpx.Client, emu: EsclEmulator, **settings: Any) -> str:
    """POSTs a job and returns its absolute URL (Location resolved against the base URL)."""
    r = post_job(client, emu, **settings)
    assert r.status_code == 201, r.text
    return urljoin(emu.url, r.headers["location"])


def status(client: httpx.Client, emu: EsclEmulator) -> dict[str, Any]:
    root = ET.fromstring(client.get(emu.url + "ScannerStatus").content)
    jobs = {}
    for info in root.iterfind("scan:Jobs/scan:JobInfo", NS):
        jobs[info.findtext("pwg:JobUuid", namespaces=NS)] = {
            "uri": info.findtext("pwg:JobUri", namespaces=NS),
            "state": info.findtext("pwg:JobState", namespaces=NS),
            "completed": int(info.findtext("pwg:ImagesCompleted", namespaces=NS)),
            "to_transfer": int(info.findtext("pwg:ImagesToTransfer", namespaces=NS)),
            "reasons": [e.text for e in info.iterfind("pwg:JobStateReasons/pwg:JobStateReason", NS)],
        }
    return {
        "state": root.findtext("pwg:State", namespaces=NS),
        "adf": root.findtext("scan:AdfState", namespaces=NS),
        "jobs": jobs,
    }


def drain(client: httpx.Client, job: str, limit: int = 20) -> list[httpx.Response]:
    """NextDocument until something other than 200 or 503 (the end), every answer kept."""
    answers = []
    for _ in range(limit):
        r = client.get(job + "/NextDocument")
        answers.append(r)
        if r.status_code not in (200, 503):
            break
    return answers


def job_id(job: str) -> str:
    return job.rstrip("/").rsplit("/", 1)[1]


# ---------------------------------------------------------------- (a) the protocol, over HTTP


def test_capabilities_parse_and_describe_the_device(client: httpx.Client) -> None:
    """Given a duplex emulator with a UUID, when ScannerCapabilities is read, then it is eSCL XML with the
    UUID, the model, a platen and a simplex and duplex ADF offering the three color modes, 150-600 dpi,
    JPEG and PDF."""
    with emulator(uuid="0f1e2d3c-aaaa-4bbb-8ccc-123456789abc", make_and_model="Emu 1", duplex=True) as emu:
        r = client.get(emu.url + "ScannerCapabilities")
    assert r.status_code == 200
    root = ET.fromstring(r.content)
    assert root.tag == f"{{{SCAN_NS}}}ScannerCapabilities"
    assert root.findtext("scan:UUID", namespaces=NS) == "0f1e2d3c-aaaa-4bbb-8ccc-123456789abc"
    assert root.findtext("pwg:MakeAndModel", namespaces=NS) == "Emu 1"
    for path in (
        "scan:Platen/scan:PlatenInputCaps",
        "scan:Adf/scan:AdfSimplexInputCaps",
        "scan:Adf/scan:AdfDuplexInputCaps",
    ):
        caps = root.find(path, NS)
        assert caps is not None, path
        modes = {e.text for e in caps.iterfind(".//scan:ColorMode", NS)}
        assert modes == {"Grayscale8", "RGB24", "BlackAndWhite1"}
        resolutions = {int(e.text) for e in caps.iterfind(".//scan:DiscreteResolution/scan:XResolution", NS)}
        assert resolutions == {150, 200, 300, 600}
        assert {e.text for e in caps.iterfind(".//pwg:DocumentFormat", NS)} == {
            "image/jpeg",
            "application/pdf",
        }


def test_simplex_device_has_no_duplex_caps(client: httpx.Client) -> None:
    """Given a simplex emulator, when ScannerCapabilities is read, then the ADF has no AdfDuplexInputCaps."""
    with emulator() as emu:
        root = ET.fromstring(client.get(emu.url + "ScannerCapabilities").content)
    assert root.find("scan:Adf/scan:AdfSimplexInputCaps", NS) is not None
    assert root.find("scan:Adf/scan:AdfDuplexInputCaps", NS) is None


def test_idle_status_before_any_job(client: httpx.Client) -> None:
    """Given a loaded emulator, when ScannerStatus is read before any job, then it is Idle, the ADF loaded,
    no job listed."""
    with emulator() as emu:
        assert status(client, emu) == {"state": "Idle", "adf": "ScannerAdfLoaded", "jobs": {}}


def test_post_records_parsed_settings_and_answers_absolute_location(client: httpx.Client) -> None:
    """Given the default emulator, when a job is POSTed, then it answers 201 with an absolute Location
    under the base URL, and records the settings parsed by namespace."""
    with emulator() as emu:
        r = post_job(client, emu, color="RGB24", resolution=200, duplex=False)
    assert r.status_code == 201
    assert r.headers["Location"].startswith(emu.url + "ScanJobs/")
    [settings] = emu.settings
    assert settings["InputSource"] == "Feeder"
    assert settings["ColorMode"] == "RGB24"
    assert (settings["XResolution"], settings["YResolution"]) == (200, 200)
    assert settings["Duplex"] is False
    assert settings["ScanRegions"][0]["Height"] == 3508
    assert settings["namespaces"]["InputSource"] == PWG_NS
    assert settings["namespaces"]["ColorMode"] == SCAN_NS


def test_relative_location(client: httpx.Client) -> None:
    """Given location="relative", when a job is POSTed, then Location is the path /eSCL/ScanJobs/<id>."""
    with emulator(location="relative") as emu:
        r = post_job(client, emu)
        [job] = emu.jobs
    assert r.headers["Location"] == f"/eSCL/ScanJobs/{job}"


def test_lowercase_location_header(client: httpx.Client) -> None:
    """Given location="lowercase" (AirSane), when a job is POSTed, then the header is spelled `location`
    and its value is relative."""
    with emulator(location="lowercase") as emu:
        r = post_job(client, emu)
        [job] = emu.jobs
    assert (b"location", f"/eSCL/ScanJobs/{job}".encode()) in r.headers.raw
    assert b"Location" not in [name for name, _ in r.headers.raw]


@pytest.mark.parametrize("end_code", [404, 409, 410])
def test_feeder_delivers_every_page_in_order_then_the_end_code(client: httpx.Client, end_code: int) -> None:
    """Given 3 pages and an end code, when NextDocument is asked until it fails, then the 3 pages come as
    they were given, then the end code, and the job shows Completed with 3 images, the ADF empty."""
    with emulator(end_code=end_code) as emu:
        job = start_job(client, emu)
        answers = drain(client, job)
        after = status(client, emu)
    assert [r.status_code for r in answers] == [200, 200, 200, end_code]
    assert [r.content for r in answers[:3]] == PAGES
    assert all(r.headers["Content-Type"] == "image/jpeg" for r in answers[:3])
    info = after["jobs"][job_id(job)]
    assert (after["state"], after["adf"]) == ("Idle", "ScannerAdfEmpty")
    assert (info["state"], info["completed"], info["to_transfer"]) == ("Completed", 3, 0)
    assert info["reasons"] == ["JobCompletedSuccessfully"]
    assert info["uri"] == f"/eSCL/ScanJobs/{job_id(job)}"


def test_busy_spell_before_each_page(client: httpx.Client) -> None:
    """Given busy_before_page=2, when NextDocument is asked, then each page comes after two 503 answers,
    while ScannerStatus says Processing."""
    with emulator(pages=PAGES[:2], busy_before_page=2) as emu:
        job = start_job(client, emu)
        first = client.get(job + "/NextDocument")
        during = status(client, emu)
        answers = [first, *drain(client, job)]
    assert [r.status_code for r in answers] == [503, 503, 200, 503, 503, 200, 404]
    assert during["state"] == "Processing"
    assert during["jobs"][job_id(job)]["state"] == "Processing"


def test_busy_on_post(client: httpx.Client) -> None:
    """Given busy_on_post=2, when a job is POSTed three times, then 503, 503, then 201; and the next job
    is refused twice again."""
    with emulator(busy_on_post=2) as emu:
        codes = [post_job(client, emu).status_code for _ in range(6)]
    assert codes == [503, 503, 201, 503, 503, 201]


@pytest.mark.parametrize("reason", ["ScannerAdfJam", "ScannerAdfMispick", "ScannerAdfDoorOpen"])
def test_jam_gives_an_empty_200_then_the_end_and_an_aborted_job(client: httpx.Client, reason: str) -> None:
    """Given jam_after=1 and an abort reason, when NextDocument is asked until it fails, then one page, an
    empty-bodied 200, then the end code; ScannerStatus shows the reason as AdfState and the job Aborted."""
    with emulator(jam_after=1, abort_reason=reason) as emu:
        job = start_job(client, emu)
        answers = drain(client, job)
        after = status(client, emu)
    assert [(r.status_code, len(r.content) > 0) for r in answers] == [(200, True), (200, False), (404, False)]
    assert answers[0].content == PAGES[0]
    assert after["adf"] == reason
    info = after["jobs"][job_id(job)]
    assert (info["state"], info["completed"]) == ("Aborted", 1)
    assert reason in info["reasons"]


def test_feeder_empty_refuses_feeder_jobs(client: httpx.Client) -> None:
    """Given feeder_empty, when a Feeder job is POSTed, then 409, no job, and AdfState ScannerAdfEmpty."""
    with emulator(feeder_empty=True) as emu:
        r = post_job(client, emu)
        after = status(client, emu)
    assert r.status_code == 409
    assert after == {"state": "Idle", "adf": "ScannerAdfEmpty", "jobs": {}}


@pytest.mark.parametrize(
    "settings",
    [
        {"source": "Camera"},
        {"color": "RGB48"},
        {"resolution": 1200},
        {"fmt": "image/png"},
        {"duplex": True},  # the default emulator's ADF is simplex
    ],
)
def test_settings_outside_the_capabilities_are_refused(
    client: httpx.Client, settings: dict[str, Any]
) -> None:
    """Given the default (simplex) emulator, when a job asks for something its capabilities do not list,
    then 409 and no job; the settings are still recorded."""
    with emulator() as emu:
        r = post_job(client, emu, **settings)
    assert r.status_code == 409
    assert emu.jobs == {}
    assert len(emu.settings) == 1


@pytest.mark.parametrize("body", [b"<not-xml", f'<pwg:Foo xmlns:pwg="{PWG_NS}"/>'.encode()])
def test_malformed_settings_are_a_bad_request(client: httpx.Client, body: bytes) -> None:
    """Given the emulator, when the POST body is not a scan:ScanSettings document, then 400."""
    with emulator() as emu:
        r = client.post(emu.url + "ScanJobs", content=body)
    assert r.status_code == 400


def test_delete_cancels_the_job(client: httpx.Client) -> None:
    """Given a running job, when it is DELETEd, then 200, it is recorded and shows Canceled, NextDocument
    answers 404, and a second DELETE or one of an unknown job answers 404."""
    with emulator() as emu:
        job = start_job(client, emu)
        deleted = client.delete(job)
        after = status(client, emu)
        next_doc = client.get(job + "/NextDocument")
        again = client.delete(job)
        unknown = client.delete(emu.url + "ScanJobs/nope")
    assert deleted.status_code == 200
    assert emu.deleted == {job_id(job)}
    assert after["jobs"][job_id(job)]["state"] == "Canceled"
    assert after["state"] == "Idle"
    assert (next_doc.status_code, again.status_code, unknown.status_code) == (404, 404, 404)
    assert f"DELETE /eSCL/ScanJobs/{job_id(job)}" in emu.requests


def test_duplex_job_doubles_the_pages(client: httpx.Client) -> None:
    """Given a duplex emulator with 3 sheets, when a Duplex job is drained, then 6 pages: each front as
    given, followed by a blank white back of the same size."""
    with emulator(duplex=True) as emu:
        job = start_job(client, emu, duplex=True)
        answers = drain(client, job)
    pages = [r.content for r in answers if r.status_code == 200]
    assert len(pages) == 6
    assert pages[0::2] == PAGES
    for back in pages[1::2]:
        img = Image.open(io.BytesIO(back))
        assert img.size == PAGE_SIZE
        assert np.asarray(img).min() > 240


def test_explicit_backs_are_delivered(client: httpx.Client) -> None:
    """Given backs for each sheet, when a Duplex job is drained, then fronts and backs alternate."""
    backs = numbered_pages(3, start=101, size=PAGE_SIZE)
    with emulator(duplex=True, backs=backs) as emu:
        answers = drain(client, start_job(client, emu, duplex=True))
    assert [r.content for r in answers if r.status_code == 200] == [
        p for pair in zip(PAGES, backs, strict=True) for p in pair
    ]


def test_platen_job_delivers_exactly_one_page(client: httpx.Client) -> None:
    """Given 3 pages, when a Platen job is drained, then only the first page, then the end code."""
    with emulator() as emu:
        answers = drain(client, start_job(client, emu, source="Platen"))
    assert [r.status_code for r in answers] == [200, 404]
    assert answers[0].content == PAGES[0]


def test_color_job_gets_rgb_jpeg(client: httpx.Client) -> None:
    """Given grayscale pages, when a job asks RGB24, then the page arrives as an RGB JPEG."""
    with emulator() as emu:
        page = client.get(start_job(client, emu, color="RGB24") + "/NextDocument")
    assert Image.open(io.BytesIO(page.content)).mode == "RGB"


def test_pdf_job_gets_one_pdf_page_embedding_the_jpeg(client: httpx.Client) -> None:
    """Given the emulator, when a job asks application/pdf, then each document is a valid one-page PDF
    whose image is the page's JPEG, unchanged."""
    with emulator() as emu:
        r = client.get(start_job(client, emu, fmt="application/pdf") + "/NextDocument")
    assert r.headers["Content-Type"] == "application/pdf"
    with pikepdf.open(io.BytesIO(r.content)) as pdf:
        assert len(pdf.pages) == 1
        [image] = pdf.pages[0].get_images().values()
        assert image.read_raw_bytes() == PAGES[0]


def test_host_headers_and_request_lines_are_recorded(client: httpx.Client) -> None:
    """Given the emulator, when a client sends `Host: localhost` (an HP quirk), then it is recorded, as is
    the request line."""
    with emulator() as emu:
        client.get(emu.url + "ScannerStatus", headers={"Host": "localhost"})
    assert emu.hosts == ["localhost"]
    assert emu.requests == ["GET /eSCL/ScannerStatus"]


def make_cert(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, like the ones HTTPS scanners use."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_https_with_a_self_signed_certificate(client: httpx.Client, tmp_path: Path) -> None:
    """Given a certificate and key, when the emulator starts, then it serves eSCL over HTTPS."""
    cert, key = make_cert(tmp_path)
    with emulator(certfile=cert, keyfile=key) as emu:
        assert emu.url.startswith("https://127.0.0.1:")
        r = client.get(emu.url + "ScannerStatus")
    assert r.status_code == 200
    assert b"ScannerStatus" in r.content


def test_pages_from_a_folder(tmp_path: Path) -> None:
    """Given a folder with a JPEG, a PNG and a text file, when it is loaded, then two JPEG pages in name
    order: the JPEG unchanged, the PNG converted."""
    (tmp_path / "a.jpg").write_bytes(PAGES[0])
    Image.new("RGB", (50, 70), (200, 10, 10)).save(tmp_path / "b.png")
    (tmp_path / "notes.txt").write_text("not a page")
    pages = pages_from_dir(tmp_path)
    assert len(pages) == 2
    assert pages[0] == PAGES[0]
    converted = Image.open(io.BytesIO(pages[1]))
    assert (converted.format, converted.size) == ("JPEG", (50, 70))


def test_numbered_pages_are_distinct_grayscale_jpegs() -> None:
    """Given a count, when numbered pages are made, then that many distinct grayscale JPEGs of the size."""
    images = [Image.open(io.BytesIO(p)) for p in PAGES]
    assert [(i.format, i.mode, i.size) for i in images] == [("JPEG", "L", PAGE_SIZE)] * 3
    assert len(set(PAGES)) == 3


# ---------------------------------------------------------------- (b) real clients: scanimage


def scanimage(
    device: str, config: dict[str, str], folder: Path, *args: str
) -> tuple[subprocess.CompletedProcess, list[Path]]:
    """Runs scanimage with a SANE configuration of its own (only the files given, so only that backend)
    in `folder`; returns the process and the pages it wrote (p1.jpg, p2.jpg, ...) in order."""
    assert shutil.which("scanimage"), "scanimage missing: scripts/setup installs sane-utils and sane-airscan"
    conf = folder / "sane.d"
    conf.mkdir()
    for name, text in config.items():
        (conf / name).write_text(text)
    env = {**os.environ, "SANE_CONFIG_DIR": str(conf)}
    proc = subprocess.run(
        ["scanimage", "-d", device, "--format=jpeg", "--resolution", "300", "--mode", "Gray", *args],
        cwd=folder, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    pages = sorted(folder.glob("p*.jpg"), key=lambda p: int(p.stem[1:]))
    return proc, pages


def airscan(emu: EsclEmulator, folder: Path, *args: str) -> tuple[subprocess.CompletedProcess, list[Path]]:
    config = {
        "dll.conf": "airscan\n",
        "airscan.conf": f'[devices]\n"Emu" = {emu.url}, escl\n[options]\ndiscovery = disable\n',
    }
    return scanimage("airscan:e0:Emu", config, folder, *args)


def adf_batch(
    emu: EsclEmulator, folder: Path, source: str = "ADF"
) -> tuple[subprocess.CompletedProcess, list[Path]]:
    return airscan(emu, folder, "--source", source, "--batch=p%d.jpg")


def which_pages(files: list[Path], pages: list[bytes]) -> list[int]:
    """Which emulator page (index) each scanned file shows: sane-airscan pads a page to the scan
    window, so the page is compared with the top-left corner of the file."""
    originals = [np.asarray(Image.open(io.BytesIO(p)).convert("L"), dtype=np.int16) for p in pages]
    found = []
    for f in files:
        scanned = np.asarray(Image.open(f).convert("L"), dtype=np.int16)
        diffs = [np.abs(scanned[: o.shape[0], : o.shape[1]] - o).mean() for o in originals]
        assert min(diffs) < 8, diffs
        found.append(int(np.argmin(diffs)))
    return found


@pytest.mark.parametrize("end_code", [404, 409, 410])
def test_airscan_scans_the_whole_feeder(tmp_path: Path, end_code: int) -> None:
    """Given 3 pages and a feeder end code, when sane-airscan scans the ADF in batch, then it saves the 3
    pages in order, ends normally, and DELETEs the completed job."""
    with emulator(end_code=end_code) as emu:
        proc, files = adf_batch(emu, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Document feeder out of documents" in proc.stderr
    assert which_pages(files, PAGES) == [0, 1, 2]
    [job] = emu.jobs.values()
    assert (job.state, job.delivered) == ("Completed", 3)
    assert emu.deleted == {job.id}
    assert emu.settings[0]["InputSource"] == "Feeder"
    assert emu.hosts[0] == f"127.0.0.1:{emu.port}"


@pytest.mark.parametrize("location", ["relative", "lowercase"])
def test_airscan_follows_relative_and_lowercase_location(tmp_path: Path, location: str) -> None:
    """Given a relative or lowercase `location:` header, when sane-airscan scans the ADF, then it gets
    all pages from the job it names."""
    with emulator(location=location) as emu:
        proc, files = adf_batch(emu, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert which_pages(files, PAGES) == [0, 1, 2]


def test_airscan_waits_out_busy_spells(tmp_path: Path) -> None:
    """Given one 503 before each of 2 pages, when sane-airscan scans the ADF, then it polls ScannerStatus,
    retries, and saves both pages."""
    with emulator(pages=PAGES[:2], busy_before_page=1) as emu:
        proc, files = adf_batch(emu, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert which_pages(files, PAGES) == [0, 1]
    assert emu.requests.count(f"GET /eSCL/ScanJobs/{next(iter(emu.jobs))}/NextDocument") == 5  # 2x503, 2, end


def test_airscan_retries_a_busy_post(tmp_path: Path) -> None:
    """Given one 503 to POST ScanJobs, when sane-airscan scans the ADF, then it POSTs again and saves all
    pages."""
    with emulator(busy_on_post=1) as emu:
        proc, files = adf_batch(emu, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(emu.settings) == 2
    assert which_pages(files, PAGES) == [0, 1, 2]


def test_airscan_reports_a_jam_as_an_io_error_after_saving_the_pages_before_it(tmp_path: Path) -> None:
    """Given a jam after 2 of 3 pages, when sane-airscan scans the ADF, then scanimage fails with an I/O
    error (exit status 9), keeps the 2 pages before the jam, and DELETEs the aborted job."""
    with emulator(jam_after=2) as emu:
        proc, files = adf_batch(emu, tmp_path)
    assert proc.returncode == 9
    assert "Error during device I/O" in proc.stderr
    assert which_pages(files, PAGES) == [0, 1]
    [job] = emu.jobs.values()
    assert job.state == "Aborted"
    assert emu.deleted == {job.id}


def test_airscan_reports_an_empty_feeder(tmp_path: Path) -> None:
    """Given an empty feeder, when sane-airscan scans the ADF, then scanimage says the feeder is out of
    documents (exit status 7) and saves nothing."""
    with emulator(feeder_empty=True) as emu:
        proc, files = adf_batch(emu, tmp_path)
    assert proc.returncode == 7
    assert "Document feeder out of documents" in proc.stderr
    assert files == []
    assert emu.jobs == {}


def test_airscan_duplex_gets_fronts_and_backs(tmp_path: Path) -> None:
    """Given a duplex emulator with 3 sheets, when sane-airscan scans "ADF Duplex", then it asks Duplex
    and saves 6 pages, fronts in order with a blank back after each."""
    with emulator(duplex=True) as emu:
        proc, files = adf_batch(emu, tmp_path, source="ADF Duplex")
    assert proc.returncode == 0, proc.stderr
    assert emu.settings[0]["Duplex"] is True
    assert len(files) == 6
    assert which_pages(files[0::2], PAGES) == [0, 1, 2]
    assert all(np.asarray(Image.open(f)).min() > 240 for f in files[1::2])


def test_airscan_scans_the_platen(tmp_path: Path) -> None:
    """Given 3 pages, when sane-airscan scans the flatbed once, then it gets the first page."""
    with emulator() as emu:
        proc, _ = airscan(emu, tmp_path, "--source", "Flatbed", "-o", "p1.jpg")
    assert proc.returncode == 0, proc.stderr
    assert which_pages([tmp_path / "p1.jpg"], PAGES) == [0]
    assert emu.settings[0]["InputSource"] == "Platen"


def test_airscan_over_https_with_a_self_signed_certificate(tmp_path: Path) -> None:
    """Given an HTTPS emulator with a self-signed certificate, when sane-airscan scans the ADF, then it
    gets all pages."""
    cert, key = make_cert(tmp_path)
    with emulator(certfile=cert, keyfile=key) as emu:
        proc, files = adf_batch(emu, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert which_pages(files, PAGES) == [0, 1, 2]


def escl(emu: EsclEmulator, folder: Path, *args: str) -> tuple[subprocess.CompletedProcess, list[Path]]:
    """The libsane1 `escl` backend, opened by URL (its discovery needs an avahi daemon). It crashes
    (SIGSEGV) in sane_open without an escl.conf, hence the empty one."""
    base = emu.url.removesuffix(f"/{emu.config.rs}/")
    return scanimage(
        f"escl:{base}", {"dll.conf": "escl\n", "escl.conf": "# devices are opened by URL\n"}, folder, *args
    )


@pytest.mark.parametrize("end_code", [404, 409, 410])
def test_escl_backend_scans_the_whole_feeder(tmp_path: Path, end_code: int) -> None:
    """Given 3 pages and a feeder end code, when the escl backend scans the ADF in batch, then it saves
    the 3 pages and ends normally (it never DELETEs the job)."""
    with emulator(end_code=end_code) as emu:
        proc, files = escl(emu, tmp_path, "--source", "ADF", "--batch=p%d.jpg")
    assert proc.returncode == 0, proc.stderr
    assert len(files) == 3
    [job] = emu.jobs.values()
    assert (job.state, job.delivered) == ("Completed", 3)
    assert emu.deleted == set()


def test_escl_backend_decodes_the_platen_pdf(tmp_path: Path) -> None:
    """Given the emulator, when the escl backend scans the flatbed, then it asks application/pdf and
    decodes the emulator's PDF into the page."""
    with emulator() as emu:
        proc, _ = escl(emu, tmp_path, "--source", "Flatbed", "-o", "p1.jpg")
    assert proc.returncode == 0, proc.stderr
    assert emu.settings[0]["DocumentFormatExt"] == "application/pdf"
    assert Image.open(tmp_path / "p1.jpg").size == PAGE_SIZE


def test_escl_backend_misses_a_jam(tmp_path: Path) -> None:
    """Given a jam after 2 of 3 pages, when the escl backend scans the ADF, then it ends the batch as if
    the feeder were empty, with 2 pages and exit status 0: only the job's Aborted state tells the truth."""
    with emulator(jam_after=2) as emu:
        proc, files = escl(emu, tmp_path, "--source", "ADF", "--batch=p%d.jpg")
    assert proc.returncode == 0, proc.stderr
    assert len(files) == 2
    assert next(iter(emu.jobs.values())).state == "Aborted"


def test_escl_backend_gives_up_on_a_busy_first_page(tmp_path: Path) -> None:
    """Given a 503 before each page, when the escl backend scans the ADF, then it reports the feeder out
    of documents without a page (exit status 7), unlike sane-airscan which retries."""
    with emulator(busy_before_page=1) as emu:
        proc, files = escl(emu, tmp_path, "--source", "ADF", "--batch=p%d.jpg")
    assert proc.returncode == 7
    assert "Document feeder out of documents" in proc.stderr
    assert files == []


def test_escl_backend_fails_on_a_lowercase_location(tmp_path: Path) -> None:
    """Given a lowercase `location:` header (AirSane's spelling), when the escl backend scans the ADF, then
    it cannot find the job: "sane_start: Invalid argument", no page."""
    with emulator(location="lowercase") as emu:
        proc, files = escl(emu, tmp_path, "--source", "ADF", "--batch=p%d.jpg")
    assert proc.returncode != 0
    assert "Invalid argument" in proc.stderr
    assert files == []
