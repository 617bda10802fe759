"""Webhooks: signed deliveries to a real HTTP receiver on loopback, retry signals, inward refusal."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest

from ingest.webhooks import Refused, Retryable, WebhookTarget, check_destination, deliver, sign

EVENT = {"kind": "created", "dossier_id": "000.00.04.H40-230414-0002", "agency": "000.00.04.H40",
         "version": 1, "batch_id": "b1", "pdf": "dossiers/x/v0001/dossier.pdf",
         "at": "2026-11-22T05:00:00+00:00"}


class Receiver(BaseHTTPRequestHandler):
    answers: ClassVar[list[int]] = []
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append((dict(self.headers), body))
        self.send_response(Receiver.answers.pop(0) if Receiver.answers else 200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.answers, Receiver.received = [], []
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()


def test_delivery_is_signed_so_the_receiver_can_check_it(receiver: str) -> None:
    target = WebhookTarget(url=receiver, secret="s3cret")
    assert deliver(target, EVENT, allow_private=True) == 200
    (headers, body), = Receiver.received
    expected = hmac.new(b"s3cret", headers["X-Sohoa-Timestamp"].encode() + b"." + body,
                        hashlib.sha256).hexdigest()
    assert headers["X-Sohoa-Signature"] == f"sha256={expected}"
    assert headers["X-Sohoa-Event"] == "created" and json.loads(body) == EVENT


def test_server_errors_ask_for_a_retry(receiver: str) -> None:
    Receiver.answers = [503]
    with pytest.raises(Retryable):
        deliver(WebhookTarget(url=receiver, secret="x"), EVENT, allow_private=True)


def test_unreachable_receiver_asks_for_a_retry() -> None:
    with pytest.raises(Retryable):
        deliver(WebhookTarget(url="http://127.0.0.1:9/hook", secret="x"), EVENT,
                allow_private=True, timeout=2)


@pytest.mark.parametrize("url", ["http://127.0.0.1/h", "http://localhost:8080/h",
                                 "http://10.1.2.3/h", "http://192.168.0.10/h", "http://[::1]/h",
                                 "http://169.254.169.254/latest", "ftp://example.org/h"])
def test_inward_or_odd_destinations_are_refused(url: str) -> None:
    with pytest.raises(Refused):
        check_destination(url)


def test_public_address_is_allowed() -> None:
    check_destination("https://93.184.216.34/hook")  # an address literal: no lookup needed


def test_private_destination_refused_before_anything_is_sent(receiver: str) -> None:
    with pytest.raises(Refused):
        deliver(WebhookTarget(url=receiver, secret="x"), EVENT)
    assert Receiver.received == []


def test_signature_depends_on_secret_timestamp_and_body() -> None:
    base = sign("a", 1, b"{}")
    assert base != sign("b", 1, b"{}") and base != sign("a", 2, b"{}") and base != sign("a", 1, b"[]")


def test_targets_hear_only_their_agencies() -> None:
    target = WebhookTarget(url="https://x.example/h", secret="s", agencies=["000.00.04.H40"])
    assert target.wants("000.00.04.H40") and not target.wants("38.98.H29")
