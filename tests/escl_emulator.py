"""An eSCL (AirScan) scanner emulator, for tests and demos: a test double, kept with the tests and
out of the product package (sohoa's scanners/ are its clients; nothing of sohoa imports this).

Real scanners differ in exactly the places where an eSCL client breaks: the `Location` of a new job
may be relative or spelled `location:`, `NextDocument` answers 503 while the page is still being
scanned, the end of a feeder job is 404, 409 or 410 depending on the vendor, and a paper jam shows up
as an empty-bodied 200 followed by `JobState` `Aborted` in `ScannerStatus`. This server reproduces
each of those on demand (see `EmulatorConfig`), so the client of sohoa can be tested against all of
them on loopback, and it records what it received so that tests can assert on the client's requests.

It is checked against Debian's sane-airscan (tests/test_escl_emulator.py), a real eSCL client.

    with EsclEmulator(EmulatorConfig(pages=numbered_pages(3), duplex=True)) as emu:
        ...  # point a client at emu.url (http://127.0.0.1:PORT/eSCL/)

Demo, from a checkout (with the test extra installed):
`python -m tests.escl_emulator --port 8090 --count 5 --duplex`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import logging
import signal
import socket
import ssl
import threading
import time
import uuid as uuid_mod
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

if TYPE_CHECKING:
    from zeroconf import ServiceInfo, Zeroconf

log = logging.getLogger(__name__)

PWG_NS = "http://www.pwg.org/schemas/2010/12/sm"
SCAN_NS = "http://schemas.hp.com/imaging/escl/2011/05/03"
ESCL_VERSION = "2.63"

COLOR_MODES = ("Grayscale8", "RGB24", "BlackAndWhite1")
FORMATS = ("image/jpeg", "application/pdf")
ABORT_REASONS = ("ScannerAdfJam", "ScannerAdfMispick", "ScannerAdfDoorOpen")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".pgm", ".ppm"}

LocationStyle = Literal["absolute", "relative", "lowercase"]
AbortReason = Literal["ScannerAdfJam", "ScannerAdfMispick", "ScannerAdfDoorOpen"]


@dataclass
class EmulatorConfig:
    """What the emulated scanner holds and which real-device behaviour it shows.

    `pages` are the sheets in the feeder (their front sides) and the platen's document (the first
    one). Every feeder job scans the whole stack again, so one emulator serves many jobs.
    """

    pages: list[bytes] = field(default_factory=list)  # JPEG bytes, one per sheet
    backs: list[bytes] | None = None  # back sides for duplex jobs; None: blank (white) backs
    uuid: str = "5d2a6a51-4ad9-4e1c-9b43-50686f61e001"
    make_and_model: str = "sohoa eSCL emulator"
    serial_number: str = "SOHOA-EMU-1"
    duplex: bool = False  # the ADF can scan both sides (AdfDuplexInputCaps, Duplex=true accepted)
    resolutions: tuple[int, ...] = (150, 200, 300, 600)
    busy_before_page: int = 0  # 503 answers to NextDocument before each page is delivered
    busy_on_post: int = 0  # 503 answers to POST ScanJobs before each job is accepted
    jam_after: int | None = None  # feeder jobs abort after this many pages (empty 200, then the end)
    abort_reason: AbortReason = "ScannerAdfJam"  # the AdfState shown by such an abort
    feeder_empty: bool = False  # POST for Feeder answers 409, AdfState ScannerAdfEmpty
    location: LocationStyle = "absolute"  # "lowercase": `location:` header, relative value (AirSane)
    end_code: Literal[404, 409, 410] = 404  # NextDocument after the last page (HP / AirSane / Xerox)
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port, see EsclEmulator.url
    certfile: str | Path | None = None  # both set: serve HTTPS (clients see a self-signed cert)
    keyfile: str | Path | None = None
    rs: str = "eSCL"  # resource path, as in the `rs` TXT key


@dataclass
class EmulatedJob:
    """A scan job as the emulator tracks it (what ScannerStatus reports)."""

    id: str
    settings: dict[str, Any]
    source: str  # Platen | Feeder
    images: list[bytes]  # what this job delivers, in order
    content_type: str
    created: float = field(default_factory=time.monotonic)
    delivered: int = 0
    busy_left: int = 0
    state: str = "Processing"  # Processing | Completed | Aborted | Canceled
    reasons: list[str] = field(default_factory=lambda: ["JobScanning"])

    @property
    def uri(self) -> str:
        return f"ScanJobs/{self.id}"


# ---------------------------------------------------------------- page helpers


def _to_jpeg(image: Any, quality: int = 85) -> bytes:
    """Encodes a Pillow image as a baseline JPEG (gray stays gray, everything else becomes RGB)."""
    if image.mode not in ("L", "RGB"):
        image = image.convert("L" if image.mode in ("1", "I", "I;16", "F", "LA") else "RGB")
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def numbered_pages(
    count: int, *, start: int = 1, size: tuple[int, int] = (827, 1169), text: str = "{n}"
) -> list[bytes]:
    """Makes `count` grayscale JPEG pages, each with its number printed big, so that a test can see
    which page arrived where (order, duplicates, losses). Default size: A4 at 100 dpi."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=max(24, size[1] // 4))
    small = ImageFont.load_default(size=max(12, size[1] // 40))
    pages = []
    for n in range(start, start + count):
        img = Image.new("L", size, 255)
        draw = ImageDraw.Draw(img)
        draw.rectangle((4, 4, size[0] - 5, size[1] - 5), outline=0, width=3)
        draw.text((size[0] // 2, size[1] // 2), text.format(n=n), fill=0, font=font, anchor="mm")
        draw.text((size[0] // 10, size[1] // 12), f"sohoa emulator page {n}", fill=0, font=small)
        pages.append(_to_jpeg(img))
    return pages


def pages_from_dir(folder: str | Path) -> list[bytes]:
    """Loads the images of a folder, in name order, as JPEG pages: JPEG files as they are, other
    images (PNG, TIFF with all its frames, ...) converted. Other files are ignored."""
    from PIL import Image, ImageSequence

    pages = []
    for path in sorted(Path(folder).iterdir()):
        suffix = path.suffix.lower()
        if not path.is_file() or suffix not in IMAGE_SUFFIXES:
            continue
        if suffix in (".jpg", ".jpeg"):
            pages.append(path.read_bytes())
            continue
        with Image.open(path) as img:
            pages.extend(_to_jpeg(frame.copy()) for frame in ImageSequence.Iterator(img))
    return pages


def _blank_like(jpeg: bytes) -> bytes:
    """A white page of the same size: the back of a one-sided sheet scanned in duplex."""
    from PIL import Image

    with Image.open(io.BytesIO(jpeg)) as img:
        return _to_jpeg(Image.new("L", img.size, 255))


def _convert(jpeg: bytes, color_mode: str | None) -> bytes:
    """The page in the asked color mode; unchanged bytes when it already is (tests compare them)."""
    if color_mode is None:
        return jpeg
    from PIL import Image

    with Image.open(io.BytesIO(jpeg)) as img:
        want = "RGB" if color_mode == "RGB24" else "L"
        if img.mode == want and color_mode != "BlackAndWhite1":
            return jpeg
        img = img.convert(want)
        if color_mode == "BlackAndWhite1":  # JPEG has no 1-bit mode: a thresholded gray page
            img = img.point(lambda v: 255 if v >= 128 else 0)
        return _to_jpeg(img)


@functools.cache
def _icon_png() -> bytes:
    """A 64x64 scanner icon, for UIs that show discovered devices."""
    from PIL import Image, ImageDraw

    img = Image.new("L", (64, 64), 255)
    draw = ImageDraw.Draw(img)
    draw.rectangle((6, 26, 57, 50), outline=0, width=3)
    draw.rectangle((14, 12, 49, 26), outline=0, width=3)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def jpeg_to_pdf(jpeg: bytes) -> bytes:
    """A one-page PDF embedding the JPEG as it is (DCTDecode), sized at its dpi (default 300)."""
    from PIL import Image

    with Image.open(io.BytesIO(jpeg)) as img:
        width, height = img.size
        gray = img.mode == "L"
        dpi = img.info.get("dpi", (300, 300))[0] or 300
    w_pt, h_pt = width * 72 / dpi, height * 72 / dpi
    content = f"q {w_pt:.2f} 0 0 {h_pt:.2f} 0 0 cm /Im0 Do Q".encode()
    colorspace = "/DeviceGray" if gray else "/DeviceRGB"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {w_pt:.2f} {h_pt:.2f}] "
        f"/Resources << /XObject << /Im0 4 0 R >> >> /Contents 5 0 R >>".encode(),
        f"<< /Type /XObject /Subtype /Image /Width {width} /Height {height} /ColorSpace {colorspace} "
        f"/BitsPerComponent 8 /Filter /DCTDecode /Length {len(jpeg)} >>\nstream\n".encode()
        + jpeg
        + b"\nendstream",
        f"<< /Length {len(content)} >>\nstream\n".encode() + content + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{off:010d} 00000 n \n".encode() for off in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


# ---------------------------------------------------------------- XML


def _input_caps(tag: str, config: EmulatorConfig, max_height: int) -> str:
    """One `*InputCaps` element, shaped like the HP LaserJet M426fdn's."""
    modes = "".join(f"<scan:ColorMode>{m}</scan:ColorMode>" for m in COLOR_MODES)
    formats = "".join(f"<pwg:DocumentFormat>{f}</pwg:DocumentFormat>" for f in FORMATS) + "".join(
        f"<scan:DocumentFormatExt>{f}</scan:DocumentFormatExt>" for f in FORMATS
    )
    resolutions = "".join(
        f"<scan:DiscreteResolution><scan:XResolution>{r}</scan:XResolution>"
        f"<scan:YResolution>{r}</scan:YResolution></scan:DiscreteResolution>"
        for r in config.resolutions
    )
    top = max(config.resolutions)
    return (
        f"<scan:{tag}><scan:MinWidth>16</scan:MinWidth><scan:MaxWidth>2550</scan:MaxWidth>"
        f"<scan:MinHeight>16</scan:MinHeight><scan:MaxHeight>{max_height}</scan:MaxHeight>"
        f"<scan:MaxPhysicalWidth>2550</scan:MaxPhysicalWidth>"
        f"<scan:MaxPhysicalHeight>{max_height}</scan:MaxPhysicalHeight>"
        "<scan:MaxScanRegions>1</scan:MaxScanRegions>"
        f"<scan:SettingProfiles><scan:SettingProfile><scan:ColorModes>{modes}</scan:ColorModes>"
        "<scan:ContentTypes><pwg:ContentType>Photo</pwg:ContentType><pwg:ContentType>Text</pwg:ContentType>"
        "<pwg:ContentType>TextAndPhoto</pwg:ContentType></scan:ContentTypes>"
        f"<scan:DocumentFormats>{formats}</scan:DocumentFormats>"
        f"<scan:SupportedResolutions><scan:DiscreteResolutions>{resolutions}</scan:DiscreteResolutions>"
        "</scan:SupportedResolutions>"
        "<scan:ColorSpaces><scan:ColorSpace>sRGB</scan:ColorSpace></scan:ColorSpaces>"
        "</scan:SettingProfile></scan:SettingProfiles>"
        "<scan:SupportedIntents><scan:Intent>Document</scan:Intent><scan:Intent>Photo</scan:Intent>"
        "<scan:Intent>Preview</scan:Intent><scan:Intent>TextAndGraphic</scan:Intent></scan:SupportedIntents>"
        f"<scan:MaxOpticalXResolution>{top}</scan:MaxOpticalXResolution>"
        f"<scan:MaxOpticalYResolution>{top}</scan:MaxOpticalYResolution>"
        f"</scan:{tag}>"
    )


def capabilities_xml(config: EmulatorConfig, base_url: str) -> bytes:
    """ScannerCapabilities: Platen and Adf (duplex caps only when the ADF is duplex)."""
    adf = _input_caps("AdfSimplexInputCaps", config, 4200)
    options = "<scan:AdfOption>DetectPaperLoaded</scan:AdfOption>"
    if config.duplex:
        adf += _input_caps("AdfDuplexInputCaps", config, 4200)
        options += "<scan:AdfOption>Duplex</scan:AdfOption>"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<scan:ScannerCapabilities xmlns:scan="{SCAN_NS}" xmlns:pwg="{PWG_NS}">'
        f"<pwg:Version>{ESCL_VERSION}</pwg:Version>"
        f"<pwg:MakeAndModel>{escape(config.make_and_model)}</pwg:MakeAndModel>"
        f"<pwg:SerialNumber>{escape(config.serial_number)}</pwg:SerialNumber>"
        f"<scan:UUID>{escape(config.uuid)}</scan:UUID>"
        f"<scan:AdminURI>{escape(base_url)}</scan:AdminURI>"
        f"<scan:Platen>{_input_caps('PlatenInputCaps', config, 3508)}</scan:Platen>"
        f"<scan:Adf>{adf}<scan:FeederCapacity>50</scan:FeederCapacity>"
        f"<scan:AdfOptions>{options}</scan:AdfOptions></scan:Adf>"
        "</scan:ScannerCapabilities>\n"
    ).encode()


def parse_scan_settings(body: bytes) -> dict[str, Any]:
    """ScanSettings as a dict keyed by local names (`InputSource`, `XResolution`, `Duplex`, ...):
    integers and booleans converted, `ScanRegions` a list of dicts, `namespaces` the namespace of
    each element (clients disagree on some, e.g. InputSource). Raises ValueError if it is not one."""
    root = ET.fromstring(body)
    if root.tag != f"{{{SCAN_NS}}}ScanSettings":
        raise ValueError(f"not a scan:ScanSettings document: {root.tag}")

    def split(tag: str) -> tuple[str, str]:
        ns, _, local = tag[1:].partition("}") if tag.startswith("{") else ("", "", tag)
        return ns, local

    def value(text: str | None) -> Any:
        text = (text or "").strip()
        if text.isdigit():
            return int(text)
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        return text

    out: dict[str, Any] = {"namespaces": {}}
    for child in root:
        ns, local = split(child.tag)
        out["namespaces"][local] = ns
        if local == "ScanRegions":
            out[local] = [{split(e.tag)[1]: value(e.text) for e in region} for region in child]
        elif len(child):
            out[local] = {split(e.tag)[1]: value(e.text) for e in child}
        else:
            out[local] = value(child.text)
    return out


# ---------------------------------------------------------------- the server


class EsclEmulator:
    """The emulated scanner: an HTTP(S) server on a background thread.

    What it saw, for assertions: `settings` (parsed ScanSettings of every POST, refused ones
    included), `requests` ("GET /eSCL/ScannerStatus", ...), `deleted` (job ids), `hosts` (Host
    headers), and `jobs` (id -> EmulatedJob).
    """

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig(pages=numbered_pages(3))
        self.settings: list[dict[str, Any]] = []
        self.requests: list[str] = []
        self.deleted: set[str] = set()
        self.hosts: list[str] = []
        self.jobs: dict[str, EmulatedJob] = {}
        self.lock = threading.RLock()
        self._post_busy_left = self.config.busy_on_post
        self._adf_state = "ScannerAdfLoaded" if self.config.pages else "ScannerAdfEmpty"
        self._server: ThreadingHTTPServer | None = None
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._zeroconf: Zeroconf | None = None
        self._own_zeroconf = False
        self._service: ServiceInfo | None = None

    # -- lifecycle

    @property
    def tls(self) -> bool:
        return bool(self.config.certfile and self.config.keyfile)

    @property
    def port(self) -> int:
        """The bound port (still known after stop(), for assertions)."""
        if self._port is None:
            raise RuntimeError("the emulator is not started")
        return self._port

    @property
    def url(self) -> str:
        """Base URL, ending in `/eSCL/`."""
        host = self.config.host
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/{self.config.rs}/"

    def start(self) -> EsclEmulator:
        if self._server is not None:
            return self
        server_class = _Server6 if ":" in self.config.host else _Server
        server = server_class((self.config.host, self.config.port), _Handler)
        server.emulator = self
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(self.config.certfile), str(self.config.keyfile))
            # The handshake then happens in the handler's thread, not in the accept loop.
            server.socket = context.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._server = server
        self._port = server.server_address[1]
        # A short poll interval: stop() waits for it, once per test.
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.02,), name="escl-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.unadvertise()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> EsclEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- mDNS

    def advertise(self, zc_or_interface_ip: Zeroconf | str, address: str | None = None) -> ServiceInfo:
        """Registers the scanner as `_uscan._tcp.local.` (`_uscans` with HTTPS) with the TXT keys
        clients read. Given an interface IP, it runs its own Zeroconf bound to that interface only
        (mDNS tests stay inside their network namespace); `address` is the advertised A record
        (default: that IP, or the emulator's host)."""
        from zeroconf import ServiceInfo, Zeroconf

        if isinstance(zc_or_interface_ip, str):
            zc = Zeroconf(interfaces=[zc_or_interface_ip])
            self._own_zeroconf = True
            address = address or zc_or_interface_ip
        else:
            zc = zc_or_interface_ip
            self._own_zeroconf = False
            address = address or self.config.host
        kind = "_uscans._tcp.local." if self.tls else "_uscan._tcp.local."
        cfg = self.config
        info = ServiceInfo(
            kind,
            f"{cfg.make_and_model}.{kind}",
            addresses=[socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)],
            port=self.port,
            properties={
                "txtvers": "1",
                "rs": cfg.rs,
                "uuid": cfg.uuid,
                "ty": cfg.make_and_model,
                "pdl": ",".join(FORMATS),
                "cs": "color,grayscale,binary",
                "is": "platen,adf",
                "duplex": "T" if cfg.duplex else "F",
                "vers": ESCL_VERSION,
                "representation": f"{self.url}icon.png",
                "adminurl": self.url,
            },
            server=f"sohoa-emu-{cfg.uuid[:8]}.local.",
        )
        zc.register_service(info)
        self._zeroconf, self._service = zc, info
        return info

    def unadvertise(self) -> None:
        if self._zeroconf is None:
            return
        with contextlib.suppress(Exception):
            if self._service is not None:
                self._zeroconf.unregister_service(self._service)
            if self._own_zeroconf:
                self._zeroconf.close()
        self._zeroconf = self._service = None

    # -- protocol

    def status_xml(self) -> bytes:
        with self.lock:
            jobs = sorted(self.jobs.values(), key=lambda j: j.created, reverse=True)
            processing = any(j.state == "Processing" for j in jobs)
            adf = "ScannerAdfEmpty" if self.config.feeder_empty else self._adf_state
            now = time.monotonic()
            infos = "".join(
                "<scan:JobInfo>"
                f"<pwg:JobUri>/{self.config.rs}/{j.uri}</pwg:JobUri><pwg:JobUuid>{j.id}</pwg:JobUuid>"
                f"<scan:Age>{int(now - j.created)}</scan:Age>"
                f"<pwg:ImagesCompleted>{j.delivered}</pwg:ImagesCompleted>"
                f"<pwg:ImagesToTransfer>{len(j.images) - j.delivered if j.state == 'Processing' else 0}"
                "</pwg:ImagesToTransfer>"
                f"<pwg:JobState>{j.state}</pwg:JobState><pwg:JobStateReasons>"
                + "".join(f"<pwg:JobStateReason>{r}</pwg:JobStateReason>" for r in j.reasons)
                + "</pwg:JobStateReasons></scan:JobInfo>"
                for j in jobs
            )
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<scan:ScannerStatus xmlns:scan="{SCAN_NS}" xmlns:pwg="{PWG_NS}">'
            f"<pwg:Version>{ESCL_VERSION}</pwg:Version>"
            f"<pwg:State>{'Processing' if processing else 'Idle'}</pwg:State>"
            f"<scan:AdfState>{adf}</scan:AdfState><scan:Jobs>{infos}</scan:Jobs></scan:ScannerStatus>\n"
        ).encode()

    def _refusal(self, s: dict[str, Any]) -> str | None:
        """Why these settings are refused (409), or None."""
        cfg = self.config
        source = s.get("InputSource", "Platen")
        if source not in ("Platen", "Feeder"):
            return f"unsupported InputSource {source!r}"
        if "ColorMode" in s and s["ColorMode"] not in COLOR_MODES:
            return f"unsupported ColorMode {s['ColorMode']!r}"
        for key in ("XResolution", "YResolution"):
            if key in s and s[key] not in cfg.resolutions:
                return f"unsupported {key} {s[key]!r}"
        fmt = s.get("DocumentFormatExt") or s.get("DocumentFormat") or "image/jpeg"
        if fmt not in FORMATS:
            return f"unsupported document format {fmt!r}"
        if source == "Feeder" and s.get("Duplex") is True and not cfg.duplex:
            return "the feeder is simplex"
        if source == "Feeder" and (cfg.feeder_empty or not cfg.pages):
            return "the feeder is empty"
        if source == "Platen" and not cfg.pages:
            return "nothing on the platen"
        return None

    def create_job(self, s: dict[str, Any]) -> tuple[int, EmulatedJob | str]:
        """POST ScanJobs: (201, job), (503, why) or (409, why)."""
        cfg = self.config
        with self.lock:
            if self._post_busy_left > 0:
                self._post_busy_left -= 1
                return 503, "busy"
            why = self._refusal(s)
            if why:
                return 409, why
            self._post_busy_left = cfg.busy_on_post
            source = s.get("InputSource", "Platen")
            mode = s.get("ColorMode")
            if source == "Platen":
                sheets = [cfg.pages[0]]
            elif s.get("Duplex") is True:
                backs = cfg.backs or [_blank_like(p) for p in cfg.pages]
                sheets = [
                    side for front, back in zip(cfg.pages, backs, strict=False) for side in (front, back)
                ]
            else:
                sheets = list(cfg.pages)
            fmt = s.get("DocumentFormatExt") or s.get("DocumentFormat") or "image/jpeg"
            images = [_convert(p, mode) for p in sheets]
            if fmt == "application/pdf":
                images = [jpeg_to_pdf(p) for p in images]
            job = EmulatedJob(uuid_mod.uuid4().hex, s, source, images, fmt, busy_left=cfg.busy_before_page)
            self.jobs[job.id] = job
            if source == "Feeder":
                self._adf_state = "ScannerAdfLoaded"
            return 201, job

    def next_document(self, job_id: str) -> tuple[int, bytes, str]:
        """GET {job}/NextDocument: (status, body, content type)."""
        cfg = self.config
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None or job.id in self.deleted:
                return 404, b"", "text/plain"
            if job.state != "Processing":
                return cfg.end_code, b"", "text/plain"
            if job.busy_left > 0:
                job.busy_left -= 1
                return 503, b"", "text/plain"
            if job.source == "Feeder" and cfg.jam_after is not None and job.delivered >= cfg.jam_after:
                job.state, job.reasons = "Aborted", ["AbortedBySystem", cfg.abort_reason]
                self._adf_state = cfg.abort_reason
                return 200, b"", job.content_type
            page = job.images[job.delivered]
            job.delivered += 1
            job.busy_left = cfg.busy_before_page
            if job.delivered == len(job.images):
                job.state, job.reasons = "Completed", ["JobCompletedSuccessfully"]
                if job.source == "Feeder":
                    self._adf_state = "ScannerAdfEmpty"
            return 200, page, job.content_type

    def delete_job(self, job_id: str) -> int:
        """DELETE {job}: 200 (a running job becomes Canceled), 404 if unknown or already deleted."""
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None or job_id in self.deleted:
                return 404
            self.deleted.add(job_id)
            if job.state == "Processing":
                job.state, job.reasons = "Canceled", ["JobCanceledByUser"]
            return 200


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    emulator: EsclEmulator


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    """Routes eSCL requests to the emulator; keep-alive, as scanners do."""

    protocol_version = "HTTP/1.1"
    server_version = "sohoa-escl-emulator/1.0"
    timeout = 30
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self,
        code: int,
        body: bytes = b"",
        content_type: str = "text/xml",
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Access-Control-Allow-Origin", "*")  # browser demos read the device directly
        self.send_header("Access-Control-Expose-Headers", "Location")
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _route(self) -> list[str] | None:
        """Path segments under the resource path, or None when outside it."""
        emu = self.server.emulator
        with emu.lock:
            emu.requests.append(f"{self.command} {self.path}")
            emu.hosts.append(self.headers.get("Host", ""))
        parts = [p for p in urlsplit(self.path).path.split("/") if p]
        if not parts or parts[0] != emu.config.rs:
            return None
        return parts[1:]

    def do_GET(self) -> None:
        emu = self.server.emulator
        self._body()
        route = self._route()
        if route == ["ScannerCapabilities"]:
            self._send(200, capabilities_xml(emu.config, emu.url))
        elif route == ["ScannerStatus"]:
            self._send(200, emu.status_xml())
        elif route == ["icon.png"]:  # the `representation` TXT key points here
            self._send(200, _icon_png(), "image/png")
        elif route and len(route) == 3 and route[0] == "ScanJobs" and route[2] == "NextDocument":
            code, body, ctype = emu.next_document(route[1])
            self._send(code, body, ctype)
        else:
            self._send(404, b"not found\n", "text/plain")

    def do_POST(self) -> None:
        emu = self.server.emulator
        body = self._body()
        route = self._route()
        if route != ["ScanJobs"]:
            self._send(404, b"not found\n", "text/plain")
            return
        try:
            settings = parse_scan_settings(body)
        except (ET.ParseError, ValueError) as exc:
            self._send(400, f"bad ScanSettings: {exc}\n".encode(), "text/plain")
            return
        with emu.lock:
            emu.settings.append(settings)
        code, result = emu.create_job(settings)
        if not isinstance(result, EmulatedJob):
            self._send(code, f"{result}\n".encode(), "text/plain")
            return
        relative = f"/{emu.config.rs}/{result.uri}"
        style = emu.config.location
        if style == "absolute":
            header = ("Location", f"{emu.url}{result.uri}")
        else:
            header = ("location" if style == "lowercase" else "Location", relative)
        self._send(201, b"", "text/plain", [header])

    def do_DELETE(self) -> None:
        emu = self.server.emulator
        self._body()
        route = self._route()
        if route and len(route) == 2 and route[0] == "ScanJobs":
            self._send(emu.delete_job(route[1]), b"", "text/plain")
        else:
            self._send(404, b"not found\n", "text/plain")

    def do_OPTIONS(self) -> None:
        self._body()
        self._route()
        self._send(
            204,
            headers=[
                ("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS"),
                ("Access-Control-Allow-Headers", "Content-Type"),
            ],
        )


# ---------------------------------------------------------------- command line


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> None:
    """Serves an emulated scanner until Ctrl-C (demos, browser tests, trying a client by hand)."""
    parser = argparse.ArgumentParser(prog="python -m tests.escl_emulator", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--pages", metavar="DIR", help="images of this folder, in name order")
    source.add_argument("--count", type=int, default=3, help="N numbered pages (default 3)")
    parser.add_argument("--duplex", action="store_true", help="duplex ADF (blank backs)")
    parser.add_argument("--jam-after", type=int, metavar="K", help="feeder jobs abort after K pages")
    parser.add_argument("--abort-reason", choices=ABORT_REASONS, default="ScannerAdfJam")
    parser.add_argument("--busy-before-page", type=int, default=0, metavar="N")
    parser.add_argument("--busy-on-post", type=int, default=0, metavar="N")
    parser.add_argument("--feeder-empty", action="store_true")
    parser.add_argument("--location", choices=("absolute", "relative", "lowercase"), default="absolute")
    parser.add_argument("--end-code", type=int, choices=(404, 409, 410), default=404)
    parser.add_argument("--uuid", default=EmulatorConfig.uuid)
    parser.add_argument("--model", default=EmulatorConfig.make_and_model)
    parser.add_argument("--cert", help="certificate file (PEM): serve HTTPS")
    parser.add_argument("--key", help="private key file (PEM)")
    parser.add_argument("--advertise", metavar="IP", help="advertise over mDNS on this interface address")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    log.setLevel(logging.DEBUG)
    config = EmulatorConfig(
        pages=pages_from_dir(args.pages) if args.pages else numbered_pages(args.count),
        uuid=args.uuid,
        make_and_model=args.model,
        duplex=args.duplex,
        busy_before_page=args.busy_before_page,
        busy_on_post=args.busy_on_post,
        jam_after=args.jam_after,
        abort_reason=args.abort_reason,
        feeder_empty=args.feeder_empty,
        location=args.location,
        end_code=args.end_code,
        host=args.host,
        port=args.port,
        certfile=args.cert,
        keyfile=args.key,
    )
    if not config.pages:
        parser.error("no pages: the folder has no images")
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` too unregisters the mDNS service
    with EsclEmulator(config) as emu:
        if args.advertise:
            emu.advertise(args.advertise)
        print(f"eSCL emulator: {emu.url} ({len(config.pages)} pages); Ctrl-C stops it", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


if __name__ == "__main__":
    main()
