"""Shared fixtures: settings pointing at a temporary data dir, and a pipeline built from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.pipeline import Pipeline
from ingest.settings import Settings
from tests import synth

pytest_plugins = ("tests.browser",)  # browser-test fixtures: live_app, browser, page (and shot)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", workers=2)


@pytest.fixture
def pipeline(settings: Settings) -> Pipeline:
    return Pipeline.from_settings(settings)


@pytest.fixture(scope="session")
def samples() -> Path:
    assert synth.SAMPLES.is_dir(), "../shared/samples must sit beside the checkout"
    return synth.SAMPLES
