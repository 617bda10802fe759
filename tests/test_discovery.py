"""mDNS discovery of eSCL scanners, inside a network namespace this test makes (two veth ends), so
no multicast ever reaches the machine's real interfaces."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

SOHOA = Path(sys.executable).parent / "sohoa"
SCANNER_IP, STATION_IP = "10.77.0.1", "10.77.0.2"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def namespace() -> Iterator[str]:
    name = f"sohoa-{uuid.uuid4().hex[:8]}"
    ip("netns", "add", name)
    try:
        inside = ["netns", "exec", name, "ip"]
        ip(*inside, "link", "add", "scanner0", "type", "veth", "peer", "name", "station0")
        ip(*inside, "addr", "add", f"{SCANNER_IP}/24", "dev", "scanner0")
        ip(*inside, "addr", "add", f"{STATION_IP}/24", "dev", "station0")
        for link in ("scanner0", "station0", "lo"):
            ip(*inside, "link", "set", link, "up")
        yield name
    finally:
        ip("netns", "del", name)


def advertise(namespace: str, scanner_uuid: str, tls: bool = False) -> subprocess.Popen:
    code = ("import sys, time; from tests.escl_emulator import EsclEmulator, EmulatorConfig, numbered_pages; "
            f"e = EsclEmulator(EmulatorConfig(pages=numbered_pages(2), host={SCANNER_IP!r}, "
            f"uuid={scanner_uuid!r}, make_and_model='Văn phòng MFP')).start(); "
            f"e.advertise({SCANNER_IP!r}); print(e.url, flush=True); time.sleep(60)")
    process = subprocess.Popen(["ip", "netns", "exec", namespace, sys.executable, "-c", code],
                               stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)
    assert process.stdout is not None
    process.url = process.stdout.readline().strip()  # type: ignore[attr-defined]
    return process


def test_an_advertised_scanner_is_listed_with_its_uuid_url_and_state(namespace: str,
                                                                      tmp_path: Path) -> None:
    """Given a scanner advertising _uscan._tcp on the office network, when staff list scanners,
    then it appears, known by its UUID, with a working URL (its state was read from it)."""
    scanner_uuid = str(uuid.uuid4())
    scanner = advertise(namespace, scanner_uuid)
    try:
        time.sleep(0.5)
        env = {**os.environ, "SOHOA_DATA_DIR": str(tmp_path / "data"),
               "SOHOA_SCANNER_DISCOVERY_SECONDS": "2"}
        out = subprocess.run(["ip", "netns", "exec", namespace, str(SOHOA), "scanners", "list", "--json"],
                             env=env, capture_output=True, text=True, timeout=60)
    finally:
        scanner.terminate()
        scanner.wait(10)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)["scanners"]
    assert [(s["id"], s["url"], s["origin"], s["state"]) for s in found] == [
        (scanner_uuid, scanner.url, "mdns", "ready")]  # type: ignore[attr-defined]


def test_a_configured_scanner_that_also_advertises_is_listed_once(namespace: str,
                                                                   tmp_path: Path) -> None:
    """Given a scanner configured by URL that is also discovered, then it is one scanner (same
    UUID), with the configured name."""
    scanner_uuid = str(uuid.uuid4())
    scanner = advertise(namespace, scanner_uuid)
    try:
        env = {**os.environ, "SOHOA_DATA_DIR": str(tmp_path / "data"),
               "SOHOA_SCANNERS": json.dumps([{"url": scanner.url, "name": "quầy 3"}])}  # type: ignore
        out = subprocess.run(["ip", "netns", "exec", namespace, str(SOHOA), "scanners", "list", "--json"],
                             env=env, capture_output=True, text=True, timeout=60)
    finally:
        scanner.terminate()
        scanner.wait(10)
    found = json.loads(out.stdout)["scanners"]
    assert [(s["id"], s["name"], s["origin"]) for s in found] == [(scanner_uuid, "quầy 3", "config+mdns")]


def test_without_multicast_configured_scanners_still_work(tmp_path: Path) -> None:
    """Given a namespace with no network at all but loopback, then discovery finds nothing and
    does not fail."""
    name = f"sohoa-{uuid.uuid4().hex[:8]}"
    ip("netns", "add", name)
    try:
        env = {**os.environ, "SOHOA_DATA_DIR": str(tmp_path / "data"),
               "SOHOA_SCANNER_DISCOVERY_SECONDS": "0.5"}
        out = subprocess.run(["ip", "netns", "exec", name, str(SOHOA), "scanners", "list", "--json"],
                             env=env, capture_output=True, text=True, timeout=60)
    finally:
        ip("netns", "del", name)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"scanners": []}
