"""The settings: one model per concern, composed by ingest/settings.py, read by the flat names
README documents (SOHOA_OCR_LANGUAGES, Settings(data_dir=...)) as before the split."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError
from pydantic_settings import SettingsError

from ingest import services
from ingest.pipeline import Pipeline
from ingest.settings import FLAT, Settings
from ocr.config import BarcodeConfig, OcrConfig
from scanners.config import ScannersConfig
from scanners.devices import Scanners
from storage.config import StorageConfig
from storage.objects import LocalObjectStore

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SOHOA_* variable of the shell running the tests leaks into them."""
    for name in list(os.environ):
        if name.upper().startswith("SOHOA_"):
            monkeypatch.delenv(name)


def test_flat_environment_variables_land_in_their_sections(monkeypatch, tmp_path) -> None:
    # Given variables by their documented flat names, JSON-valued ones among them
    monkeypatch.setenv("SOHOA_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SOHOA_OCR_LANGUAGES", "eng")
    monkeypatch.setenv("SOHOA_OCR_MAX_DPI", "300")
    monkeypatch.setenv("SOHOA_RENDER_SECONDS", "2.5")
    monkeypatch.setenv("SOHOA_BARCODE_FORMATS", '["code39"]')
    monkeypatch.setenv("SOHOA_S3_BUCKET", "archive")
    monkeypatch.setenv("SOHOA_WEB_SECURE_COOKIES", "true")
    monkeypatch.setenv("SOHOA_SCANNERS", '[{"url": "http://10.0.0.9/eSCL/", "name": "mfp"}]')
    monkeypatch.setenv("SOHOA_SCANNER_DISCOVERY", "false")
    monkeypatch.setenv("SOHOA_FOLDER", '{"devices": {"mfp-1": "/srv/scans"}}')
    monkeypatch.setenv("SOHOA_WEBHOOKS", '[{"url": "https://hooks.example/x", "secret": "s"}]')
    monkeypatch.setenv("SOHOA_REGISTRY_URL", "https://igate.example/{code}")
    monkeypatch.setenv("SOHOA_PAGES_IN_FLIGHT", "3")
    monkeypatch.setenv("SOHOA_RECOVERY", '{"lease_s": 5}')
    monkeypatch.setenv("SOHOA_WORKERS", "2")
    # When the settings are read
    settings = Settings()
    # Then each value is in its concern's model
    assert settings.storage.data_dir == tmp_path and settings.storage.s3.bucket == "archive"
    assert (settings.ocr.languages, settings.ocr.max_dpi, settings.ocr.render_seconds) \
        == ("eng", 300, 2.5)
    assert settings.barcodes.formats == ["Code39"]
    assert settings.web.secure_cookies is True
    assert [s.name for s in settings.scanners.devices] == ["mfp"]
    assert settings.scanners.discovery is False
    assert settings.scanners.folder is not None
    assert settings.scanners.folder.devices == {"mfp-1": Path("/srv/scans")}
    assert [t.url for t in settings.webhooks.targets] == ["https://hooks.example/x"]
    assert settings.registry.url == "https://igate.example/{code}"
    assert settings.broker.pages_in_flight == 3 and settings.recovery.lease_s == 5
    assert settings.workers == 2


def test_flat_keywords_land_in_their_sections_and_override_the_environment(
        monkeypatch, tmp_path) -> None:
    # Given the environment sets two OCR fields
    monkeypatch.setenv("SOHOA_OCR_LANGUAGES", "eng")
    monkeypatch.setenv("SOHOA_OCR_MAX_DPI", "300")
    # When the constructor names one of them, and others, by flat name
    settings = Settings(data_dir=tmp_path, ocr_max_dpi=150, registry_allow_private=True,
                        scanner_discovery=False, max_upload_mb=1)
    # Then the keyword wins for its field only, and every keyword is in its section
    assert (settings.ocr.languages, settings.ocr.max_dpi) == ("eng", 150)
    assert settings.storage.data_dir == tmp_path
    assert settings.registry.allow_private is True and settings.scanners.discovery is False
    assert settings.web.max_upload_mb == 1


def test_a_section_may_be_given_whole_or_field_by_field_nested(monkeypatch) -> None:
    monkeypatch.setenv("SOHOA_OCR__TIMEOUT_S", "7")
    monkeypatch.setenv("SOHOA_STORAGE__S3__BUCKET", "nested")
    monkeypatch.setenv("SOHOA_RECOVERY__TICK_S", "3")
    settings = Settings(barcodes=BarcodeConfig(engines=["pyzbar"]))
    assert settings.ocr.timeout_s == 7 and settings.storage.s3.bucket == "nested"
    assert settings.recovery.tick_s == 3
    assert settings.barcodes.engines == ["pyzbar"]
    both = Settings(ocr=OcrConfig(languages="fra"), ocr_max_dpi=100)  # a section and a flat name
    assert (both.ocr.languages, both.ocr.max_dpi) == ("fra", 100)


def test_what_lives_in_the_data_dir_follows_it(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.scanners.spool_dir == tmp_path / "spool"
    assert settings.broker.url == f"sqla+sqlite:///{tmp_path.resolve() / 'broker.sqlite3'}"
    assert settings.storage.catalog_url == f"sqlite:///{tmp_path.resolve() / 'catalog.sqlite3'}"


def test_each_layer_is_given_its_own_section(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path / "data", workers=1, render_seconds=2.5,
                        scanners=[{"url": "http://10.0.0.9/eSCL/", "name": "mfp"}],
                        scanner_discovery=False)
    assert isinstance(settings.storage, StorageConfig)
    store = services.object_store(settings.storage)
    assert isinstance(store, LocalObjectStore)
    assert isinstance(settings.scanners, ScannersConfig)
    scanners = Scanners.from_config(settings.scanners, settings.storage.data_dir)
    assert [c.name for c in scanners.configured] == ["mfp"] and scanners.discovery is False
    assert Pipeline.from_settings(settings).limits.render_seconds == 2.5


@pytest.mark.parametrize(("variable", "value", "named"), [
    ("SOHOA_OCR_MAX_DPI", "-1", "ocr_max_dpi"),
    ("SOHOA_JPEG_QUALITY", "5", "jpeg_quality"),
    ("SOHOA_WEB_SESSION_IDLE_HOURS", "0", "web_session_idle_hours"),
    ("SOHOA_S3_SECURE", "maybe", "s3_secure"),
    ("SOHOA_SCANNERS", '[{"url": "ftp://nowhere"}]', "scanners.0.url"),
    ("SOHOA_BROKER_QUEUE", "no spaces", "broker_queue"),
])
def test_a_refused_value_names_the_setting_as_the_user_wrote_it(monkeypatch, variable, value,
                                                                named) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert re.search(rf"^{re.escape(named)}$", str(caught.value), re.MULTILINE)


def test_a_refused_keyword_names_it_too() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(ocr_engine="gpu")
    assert re.search(r"^ocr_engine$", str(caught.value), re.MULTILINE)


def test_json_that_does_not_parse_names_the_variable(monkeypatch) -> None:
    monkeypatch.setenv("SOHOA_FOLDER", "{not json")
    with pytest.raises(SettingsError, match="SOHOA_FOLDER is not valid JSON"):
        Settings()


def test_every_flat_name_has_a_place_and_a_line_in_the_readme() -> None:
    readme = README.read_text()
    for name, path in FLAT.items():
        model: type[BaseModel] = Settings
        for part in path[:-1]:
            model = model.model_fields[part].annotation  # type: ignore[assignment]
        assert path[-1] in model.model_fields, name
        assert f"`SOHOA_{name.upper()}`" in readme, name
