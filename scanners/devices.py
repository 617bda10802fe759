"""The office's eSCL scanners: configured by URL and/or discovered, known by UUID, with a state.

HTTPS scanners use self-signed certificates, so each one's certificate is pinned: taken from the
configuration (`certificate_sha256`) or trusted on first use and kept in data_dir/scanners/pins.json;
a later change of certificate is refused until an admin removes the pin.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from scanners.config import ScannerConfig, ScannersConfig
from scanners.discovery import Advertised
from scanners.escl import (
    CertificateMismatch,
    EsclClient,
    EsclError,
    certificate_fingerprint,
    fetch_certificate,
)

log = logging.getLogger(__name__)


@dataclass
class Device:
    id: str  # UUID (lower case)
    name: str
    url: str
    origin: str  # config | mdns | config+mdns
    model: str = ""
    agency: str | None = None
    state: str = "unknown"  # idle, ready, busy, feeder_empty, jammed, door_open, misfeed, unreachable
    adf_state: str | None = None
    error: str | None = None

    def public(self) -> dict[str, object]:
        return asdict(self)


ADF_STATES = {"ScannerAdfEmpty": "feeder_empty", "ScannerAdfLoaded": "ready",
              "ScannerAdfJam": "jammed", "ScannerAdfDoorOpen": "door_open",
              "ScannerAdfHatchOpen": "door_open", "ScannerAdfMispick": "misfeed",
              "ScannerAdfMultipickDetected": "misfeed"}


class Pins:
    """Pinned certificates per device key, in one JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _read(self) -> dict[str, str]:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def certificate(self, key: str, url: str, expected_sha256: str | None) -> str:
        with self._lock:
            pins = self._read()
            if key in pins:
                return pins[key]
            pem = fetch_certificate(url)
            fingerprint = certificate_fingerprint(pem)
            if expected_sha256 and fingerprint != expected_sha256.lower().replace(":", ""):
                raise CertificateMismatch(
                    f"{url} presented certificate {fingerprint}, not the configured one")
            pins[key] = pem
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(pins, indent=1))
            tmp.replace(self.path)
            log.info("pinned the certificate of %s (%s)", url, fingerprint)
            return pem


class Scanners:
    def __init__(self, configured: list[ScannerConfig], data_dir: Path, discovery: bool = True,
                 discovery_seconds: float = 2.0, timeout: float = 30.0) -> None:
        self.configured = configured
        self.discovery, self.discovery_seconds, self.timeout = discovery, discovery_seconds, timeout
        self.pins = Pins(data_dir / "scanners" / "pins.json")
        self._devices: dict[str, Device] = {}
        self._options: dict[str, ScannerConfig] = {}
        self._advertised: tuple[float, list[Advertised]] = (0.0, [])

    @classmethod
    def from_config(cls, config: ScannersConfig, data_dir: Path, discovery: bool = True) -> Scanners:
        """The scanners of the `scanners` settings; `discovery=False` turns mDNS off whatever
        the settings say (a one-off command naming its scanner)."""
        return cls(config.devices, data_dir, discovery and config.discovery,
                   config.discovery_seconds, config.timeout_s)

    def names(self) -> dict[str, str]:
        """Scanner names by id, from the configuration and the last reading: no request."""
        found = {c.uuid.lower(): c.name for c in self.configured if c.uuid and c.name}
        found.update((d.id, d.name) for d in self._devices.values())
        return found

    def known(self) -> list[Device]:
        """The scanners as last read, without asking them again."""
        if not self._devices:
            return self.refresh(with_state=False)
        return sorted(self._devices.values(), key=lambda d: d.name)

    def _discover(self) -> list[Advertised]:
        """mDNS answers, browsed at most once a minute: browsing takes seconds."""
        from scanners.discovery import discover

        at, found = self._advertised
        if time.monotonic() - at < 60 and at:
            return found
        try:
            found = discover(self.discovery_seconds)
        except (OSError, RuntimeError) as e:  # no multicast here: configured scanners still work
            log.warning("mDNS discovery failed: %s", e)
            found = []
        self._advertised = (time.monotonic(), found)
        return found

    def client(self, url: str, options: ScannerConfig | None = None, timeout: float | None = None,
               key: str | None = None) -> EsclClient:
        pem = None
        if url.startswith("https:"):
            pem = self.pins.certificate(key or url, url, options.certificate_sha256 if options else None)
        return EsclClient(url, timeout=timeout or self.timeout, pinned_cert=pem,
                          host_header=options.host_header if options else None,
                          page_delay=options.page_delay if options else 0.0)

    def client_for(self, device: Device) -> EsclClient:
        options = self._options.get(device.id)
        key = (options.uuid or options.url) if options else device.id
        return self.client(device.url, options, key=key)

    def refresh(self, with_state: bool = True, discover: bool = True) -> list[Device]:
        """Reads every configured scanner (and the discovered ones, unless `discover` is off)
        and their state now."""
        devices: dict[str, Device] = {}
        options: dict[str, ScannerConfig] = {}
        for config in self.configured:
            device = Device(id=(config.uuid or "").lower(), name=config.name or config.url,
                            url=config.url, origin="config", agency=config.agency)
            try:
                with self.client(config.url, config, timeout=5.0,
                                 key=config.uuid or config.url) as client:
                    caps = client.capabilities()
                    device.id = device.id or caps.stable_id()
                    device.model = caps.make_and_model
                    if not config.name:
                        device.name = caps.make_and_model or config.url
                    if with_state:
                        self._read_state(client, device)
            except EsclError as e:
                device.state, device.error = "unreachable", str(e)
                device.id = device.id or f"url:{config.url}"
            devices[device.id] = device
            options[device.id] = config
        if self.discovery and discover:
            for found in self._discover():
                key = found.uuid or f"url:{found.url}"
                if key in devices:
                    devices[key].origin = "config+mdns"
                    continue
                device = Device(id=key, name=found.name, url=found.url, origin="mdns",
                                model=found.model)
                if with_state:
                    try:
                        with self.client(found.url, None, timeout=5.0, key=key) as client:
                            self._read_state(client, device)
                    except EsclError as e:
                        device.state, device.error = "unreachable", str(e)
                devices[key] = device
        self._devices, self._options = devices, options
        return sorted(devices.values(), key=lambda d: d.name)

    @staticmethod
    def _read_state(client: EsclClient, device: Device) -> None:
        status = client.status()
        device.adf_state = status.adf_state
        if status.state in ("Processing", "Testing"):
            device.state = "busy"
        elif status.state in ("Stopped", "Down"):
            device.state = ADF_STATES.get(status.adf_state or "", "stopped")
        else:
            device.state = ADF_STATES.get(status.adf_state or "", "idle")

    def find(self, wanted: str) -> tuple[Device, ScannerConfig | None]:
        """A scanner by UUID, name or URL (case-insensitive). The configured scanners are asked
        first: browsing mDNS takes seconds, spent only when `wanted` is none of them."""
        if not self._devices:
            self.refresh(with_state=False, discover=False)
        found = self._match(wanted)
        if found is None and self.discovery:
            self.refresh(with_state=False)
            found = self._match(wanted)
        if found is None:
            raise KeyError(wanted)
        return found, self._options.get(found.id)

    def _match(self, wanted: str) -> Device | None:
        wanted_l = wanted.lower()
        for device in self._devices.values():
            if wanted_l in (device.id.lower(), device.name.lower(), device.url.lower()):
                return device
        return None
