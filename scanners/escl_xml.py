"""eSCL documents: the ScanSettings we send, the capabilities and status devices answer.

Requests are written with the `pwg:`/`scan:` prefixes spelled out because some devices parse
them with regular expressions. Answers are read by namespace, and anything a device leaves out
gets a conservative default, since real firmware omits elements the specification calls required.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from xml.etree import ElementTree as ET

PWG = "http://www.pwg.org/schemas/2010/12/sm"
SCAN = "http://schemas.hp.com/imaging/escl/2011/05/03"
NS = {"pwg": PWG, "scan": SCAN}

A4_300THS = (2480, 3508)  # A4 in 1/300 inch: 210 x 297 mm


class EsclXmlError(ValueError):
    """A device answered with XML we cannot read."""


@dataclass(frozen=True)
class ScanRequest:
    source: str = "feeder"  # feeder | platen
    duplex: bool = False
    color_mode: str = "Grayscale8"  # Grayscale8 | RGB24 | BlackAndWhite1
    resolution: int = 300
    document_format: str = "image/jpeg"
    intent: str = "TextAndGraphic"
    width: int = A4_300THS[0]  # 1/300 inch
    height: int = A4_300THS[1]


@dataclass
class InputCaps:
    color_modes: list[str] = field(default_factory=list)
    resolutions: list[int] = field(default_factory=list)
    formats: list[str] = field(default_factory=list)
    intents: list[str] = field(default_factory=list)
    max_width: int = 0
    max_height: int = 0


@dataclass
class Capabilities:
    make_and_model: str = ""
    serial: str = ""
    uuid: str | None = None
    version: str = ""
    platen: InputCaps | None = None
    adf_simplex: InputCaps | None = None
    adf_duplex: InputCaps | None = None

    def caps_for(self, source: str, duplex: bool) -> InputCaps | None:
        if source == "platen":
            return self.platen
        if duplex:
            return self.adf_duplex
        return self.adf_simplex or self.adf_duplex

    def stable_id(self) -> str:
        """The device UUID; devices that do not say theirs (HP) get one from model and serial."""
        if self.uuid:
            return self.uuid.lower()
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"escl:{self.make_and_model}:{self.serial}"))


@dataclass
class JobInfo:
    uri: str
    state: str  # Processing | Completed | Aborted | Canceled | Pending
    reasons: list[str]
    images_completed: int | None


@dataclass
class Status:
    state: str  # Idle | Processing | Testing | Stopped | Down
    adf_state: str | None
    jobs: list[JobInfo]

    def job(self, job_url: str) -> JobInfo | None:
        """The JobInfo of a job, matched on the path's last segment (devices answer relative,
        absolute or differently prefixed URIs for the same job)."""
        wanted = job_url.rstrip("/").rsplit("/", 1)[-1]
        for job in self.jobs:
            if job.uri.rstrip("/").rsplit("/", 1)[-1] == wanted:
                return job
        return None


def scan_settings(request: ScanRequest, caps: InputCaps | None = None) -> bytes:
    width, height = request.width, request.height
    if caps and caps.max_width:
        width = min(width, caps.max_width)
    if caps and caps.max_height:
        height = min(height, caps.max_height)
    source = "Feeder" if request.source == "feeder" else "Platen"
    duplex = (f"  <scan:Duplex>{'true' if request.duplex else 'false'}</scan:Duplex>\n"
              if request.source == "feeder" else "")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<scan:ScanSettings xmlns:scan="{SCAN}" xmlns:pwg="{PWG}">
  <pwg:Version>2.0</pwg:Version>
  <scan:Intent>{request.intent}</scan:Intent>
  <pwg:ScanRegions>
    <pwg:ScanRegion>
      <pwg:ContentRegionUnits>escl:ThreeHundredthsOfInches</pwg:ContentRegionUnits>
      <pwg:XOffset>0</pwg:XOffset>
      <pwg:YOffset>0</pwg:YOffset>
      <pwg:Width>{width}</pwg:Width>
      <pwg:Height>{height}</pwg:Height>
    </pwg:ScanRegion>
  </pwg:ScanRegions>
  <pwg:InputSource>{source}</pwg:InputSource>
{duplex}  <scan:ColorMode>{request.color_mode}</scan:ColorMode>
  <scan:XResolution>{request.resolution}</scan:XResolution>
  <scan:YResolution>{request.resolution}</scan:YResolution>
  <pwg:DocumentFormat>{request.document_format}</pwg:DocumentFormat>
  <scan:DocumentFormatExt>{request.document_format}</scan:DocumentFormatExt>
</scan:ScanSettings>
""".encode()


def _parse(data: bytes, what: str) -> ET.Element:
    try:
        return ET.fromstring(data)
    except ET.ParseError as e:
        raise EsclXmlError(f"{what} is not XML: {e}") from e


def _text(node: ET.Element, path: str) -> str | None:
    found = node.find(path, NS)
    return found.text.strip() if found is not None and found.text else None


def _input_caps(node: ET.Element | None) -> InputCaps | None:
    if node is None:
        return None
    caps = InputCaps()
    caps.color_modes = sorted({e.text.strip() for e in node.iterfind(".//scan:ColorMode", NS) if e.text})
    caps.formats = sorted({e.text.strip() for e in node.iter()
                           if e.tag in (f"{{{PWG}}}DocumentFormat", f"{{{SCAN}}}DocumentFormatExt")
                           and e.text})
    caps.intents = sorted({e.text.strip() for e in node.iterfind(".//scan:Intent", NS) if e.text})
    resolutions = {int(e.text) for e in node.iterfind(".//scan:DiscreteResolution/scan:XResolution", NS)
                   if e.text and e.text.strip().isdigit()}
    for rng in node.iterfind(".//scan:ResolutionRange", NS):  # a range: offer the usual steps
        low = int(_text(rng, "scan:XResolutionRange/scan:Min") or 0)
        high = int(_text(rng, "scan:XResolutionRange/scan:Max") or 0)
        resolutions |= {r for r in (75, 100, 150, 200, 300, 400, 600, 1200) if low <= r <= high}
    caps.resolutions = sorted(resolutions)
    caps.max_width = int(_text(node, "scan:MaxWidth") or 0)
    caps.max_height = int(_text(node, "scan:MaxHeight") or 0)
    return caps


def parse_capabilities(data: bytes) -> Capabilities:
    root = _parse(data, "ScannerCapabilities")
    if not root.tag.endswith("ScannerCapabilities"):
        raise EsclXmlError(f"expected ScannerCapabilities, got {root.tag}")
    return Capabilities(
        make_and_model=_text(root, "pwg:MakeAndModel") or "",
        serial=_text(root, "pwg:SerialNumber") or "",
        uuid=_text(root, "scan:UUID"),
        version=_text(root, "pwg:Version") or "",
        platen=_input_caps(root.find("scan:Platen/scan:PlatenInputCaps", NS)),
        adf_simplex=_input_caps(root.find("scan:Adf/scan:AdfSimplexInputCaps", NS)),
        adf_duplex=_input_caps(root.find("scan:Adf/scan:AdfDuplexInputCaps", NS)),
    )


def parse_status(data: bytes) -> Status:
    root = _parse(data, "ScannerStatus")
    jobs = []
    for info in root.iterfind("scan:Jobs/scan:JobInfo", NS):
        completed = _text(info, "pwg:ImagesCompleted")
        jobs.append(JobInfo(
            uri=_text(info, "pwg:JobUri") or "",
            state=_text(info, "pwg:JobState") or "",
            reasons=[e.text.strip() for e in info.iterfind("pwg:JobStateReasons/pwg:JobStateReason", NS)
                     if e.text],
            images_completed=int(completed) if completed and completed.isdigit() else None))
    return Status(state=_text(root, "pwg:State") or "", adf_state=_text(root, "scan:AdfState"),
                  jobs=jobs)
