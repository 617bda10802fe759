"""Finding eSCL scanners on the local network over mDNS/DNS-SD (`_uscan._tcp`, `_uscans._tcp`).

Office networks often block multicast, so discovery only adds to the scanners configured by URL;
it never replaces them. Devices are told apart by the UUID in their TXT record, not by address,
because DHCP moves them.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field

from zeroconf import InterfaceChoice, IPVersion, ServiceBrowser, ServiceListener, Zeroconf

SERVICE_TYPES = ("_uscan._tcp.local.", "_uscans._tcp.local.")


@dataclass(frozen=True)
class Advertised:
    uuid: str | None
    name: str
    url: str  # base URL ending in the resource path, e.g. http://10.0.0.5:8080/eSCL/
    model: str = ""
    txt: dict[str, str] = field(default_factory=dict)


class _Collector(ServiceListener):
    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()

    def add_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        self.seen.add((type_, name))

    def update_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        self.seen.add((type_, name))

    def remove_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        self.seen.discard((type_, name))


def _txt(properties: dict[bytes, bytes | None]) -> dict[str, str]:
    """TXT keys are case-insensitive: keep them lower-cased."""
    return {k.decode(errors="replace").lower(): (v or b"").decode(errors="replace")
            for k, v in properties.items()}


def _host(address: str) -> str:
    return f"[{address}]" if ipaddress.ip_address(address).version == 6 else address


def discover(seconds: float = 2.0, interfaces: list[str] | None = None) -> list[Advertised]:
    """Browses for `seconds` and returns each advertised scanner once (by UUID), preferring its
    HTTPS service when it offers both."""
    zc = Zeroconf(interfaces=interfaces or InterfaceChoice.All, ip_version=IPVersion.V4Only)
    collector = _Collector()
    browsers = [ServiceBrowser(zc, t, collector) for t in SERVICE_TYPES]
    try:
        time.sleep(seconds)
        found: dict[str, Advertised] = {}
        for type_, name in sorted(collector.seen):
            info = zc.get_service_info(type_, name, timeout=int(max(seconds, 1) * 1000))
            if info is None or not info.parsed_addresses() or not info.port:
                continue
            txt = _txt(info.properties)
            scheme = "https" if type_.startswith("_uscans") else "http"
            resource = txt.get("rs", "eSCL").strip("/")
            base = f"{scheme}://{_host(info.parsed_addresses()[0])}:{info.port}/"
            url = base + (resource + "/" if resource else "")
            uuid = (txt.get("uuid") or "").lower() or None
            key = uuid or url
            label = name[: -len(type_) - 1] if name.endswith(type_) else name
            advertised = Advertised(uuid, label, url, txt.get("ty", ""), txt)
            if key not in found or scheme == "https":
                found[key] = advertised
        return list(found.values())
    finally:
        for browser in browsers:
            browser.cancel()
        zc.close()
