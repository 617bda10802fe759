"""eSCL documents: real devices' answers are read, our requests are what devices expect."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from scanners.escl_xml import NS, EsclXmlError, ScanRequest, parse_capabilities, parse_status, scan_settings


def test_hp_capabilities_give_sources_modes_and_resolutions(samples: Path) -> None:
    """Given the HP M426fdn's answer, then its feeder does 300 dpi grayscale JPEG in duplex."""
    caps = parse_capabilities((samples / "escl" / "HP-LaserJet-MFP-M426fdn-ScannerCapabilities.xml")
                              .read_bytes())
    assert caps.make_and_model == "HP LaserJet MFP M426fdn"
    assert caps.adf_duplex is not None and caps.platen is not None
    assert caps.adf_simplex.resolutions == [75, 200, 300]
    assert caps.platen.resolutions == [75, 200, 300, 600, 1200]
    assert "Grayscale8" in caps.adf_simplex.color_modes
    assert "image/jpeg" in caps.adf_simplex.formats


def test_a_device_without_a_uuid_gets_a_stable_one_from_model_and_serial(samples: Path) -> None:
    """Given the HP (no scan:UUID), when its id is asked twice, then both are the same UUID."""
    data = (samples / "escl" / "HP-LaserJet-MFP-M426fdn-ScannerCapabilities.xml").read_bytes()
    assert parse_capabilities(data).uuid is None
    assert parse_capabilities(data).stable_id() == parse_capabilities(data).stable_id()


@pytest.mark.parametrize(("name", "uuid"), [
    ("Kyocera-ECOSYS-M2040dn", "4509a320-00a0-008f-00b6-002507510eca"),
    ("Xerox-B235", "67bbb526-3a17-474f-a567-2ca5f6156613"),
    ("AirSane", "8ee2d9c0-6510-588d-bbcf-4bc1fd245dda"),
])
def test_devices_are_identified_by_the_uuid_they_state(samples: Path, name: str, uuid: str) -> None:
    caps = parse_capabilities((samples / "escl" / f"{name}-ScannerCapabilities.xml").read_bytes())
    assert caps.stable_id() == uuid
    assert caps.adf_simplex is not None or caps.adf_duplex is not None


def test_status_gives_adf_state_and_each_jobs_state(samples: Path) -> None:
    status = parse_status((samples / "escl" / "HP-LaserJet-MFP-M426fdn-ScannerStatus.xml").read_bytes())
    assert (status.state, status.adf_state) == ("Idle", "ScannerAdfEmpty")
    job = status.job("http://10.0.0.9/eSCL/ScanJobs/1005")
    assert job is not None and job.state == "Completed" and job.images_completed == 1


def test_scan_settings_are_prefixed_xml_with_the_requested_job() -> None:
    """When a duplex 300 dpi grayscale feeder job is asked, then the XML says so with pwg/scan prefixes."""
    xml = scan_settings(ScanRequest(source="feeder", duplex=True))
    assert b"<pwg:InputSource>Feeder</pwg:InputSource>" in xml  # prefixes kept for regex parsers
    root = ET.fromstring(xml)
    assert root.find("scan:ColorMode", NS).text == "Grayscale8"
    assert root.find("scan:XResolution", NS).text == "300"
    assert root.find("scan:Duplex", NS).text == "true"
    assert root.find("pwg:DocumentFormat", NS).text == "image/jpeg"


def test_garbage_is_a_clear_error() -> None:
    with pytest.raises(EsclXmlError):
        parse_capabilities(b"<html>login</html")
