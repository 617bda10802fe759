"""The registry hook: codes the processing system does not know go to review."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from ingest.page_stages import DetectBlank, ReadBarcodes
from ingest.pipeline import Pipeline
from ingest.registry import RegistryUnavailable
from ingest.runner import run_file
from ingest.settings import Settings
from tests.synth import ASN_BATCH

KNOWN = {"ASN00123": {"procedure": "1.000948", "applicant": "Nguyễn Văn An"},
         "ASN00124": {}, "ASN00125": {}}


class Registry(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code = self.path.rsplit("/", 1)[-1]
        if self.headers.get("Authorization") != "Bearer t0ken":
            self.send_response(401)
            self.end_headers()
            return
        body = json.dumps(KNOWN[code]).encode() if code in KNOWN else b""
        self.send_response(200 if code in KNOWN else 404)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def registry_url() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/api/dossiers/{{code}}"
    server.shutdown()


def pipeline_with(tmp_path: Path, url: str) -> Pipeline:
    settings = Settings(data_dir=tmp_path / "data", workers=1, registry_url=url,
                        registry_token="t0ken", registry_allow_private=True,
                        dossier_code_grammar=r"^(?P<agency>ASN)(?P<date>)(?P<seq>\d{5})$")
    pipeline = Pipeline.from_settings(settings)
    pipeline.page_stages = [ReadBarcodes(), DetectBlank()]
    return pipeline


def test_unknown_codes_go_to_review(tmp_path: Path, registry_url: str) -> None:
    record = run_file(pipeline_with(tmp_path, registry_url), ASN_BATCH)
    assert [d.dossier_id for d in record.dossiers] == ["ASN00123", "ASN00124", "ASN00125"]
    assert record.status == "needs_review" and record.unmatched_pages == [6, 8]
    assert [(r.code, r.reason) for r in record.review] == [
        ("ASN00126", "unknown_to_registry"), ("ASN00127", "unknown_to_registry")]


def test_registry_down_interrupts_the_batch_to_be_finished_later(tmp_path: Path) -> None:
    pipeline = pipeline_with(tmp_path, "http://127.0.0.1:9/api/dossiers/{code}")
    with pytest.raises(RegistryUnavailable):
        run_file(pipeline, ASN_BATCH)
    batch = next((tmp_path / "data" / "objects" / "batches").iterdir())
    record = json.loads((batch / "batch.json").read_text())
    assert (record["status"], record["waiting_for"]["dependency"]) == ("waiting", "registry")
    assert (batch / "original.pdf").exists()  # nothing lost; running again resumes


def test_private_registry_is_refused_unless_allowed(tmp_path: Path, registry_url: str) -> None:
    pipeline = pipeline_with(tmp_path, registry_url)
    pipeline.settings.registry.allow_private = False
    with pytest.raises(RegistryUnavailable, match="not allowed"):
        run_file(pipeline, ASN_BATCH)


def test_a_registry_name_that_rebinds_inward_is_refused(registry_url: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Given a registry name that is public when checked and loopback when connected to (DNS
    rebinding), then the lookup is refused as not allowed and the local server gets nothing."""
    from ingest.registry import Registry as Lookup
    from tests.test_webhooks import Resolver

    dns = Resolver()
    monkeypatch.setattr("socket.getaddrinfo", dns)
    port = registry_url.split(":")[2].split("/")[0]
    dns.answers["registry.example"] = [["93.184.216.34"], ["127.0.0.1"]]
    with pytest.raises(RegistryUnavailable, match="not allowed"):
        Lookup(f"http://registry.example:{port}/api/dossiers/{{code}}", "t0ken").lookup("ASN00123")
