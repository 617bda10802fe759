"""Webhooks: signed deliveries to a real HTTP receiver on loopback, retry signals, inward refusal."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpcore
import httpx
import pytest

from ingest.webhooks import (
    Redirected,
    Refused,
    Retryable,
    WebhookTarget,
    check_destination,
    deliver,
    outside_transport,
    sign,
)

EVENT = {"kind": "created", "dossier_id": "000.00.04.H40-230414-0002", "agency": "000.00.04.H40",
         "version": 1, "batch_id": "b1", "pdf": "dossiers/x/v0001/dossier.pdf",
         "at": "2026-11-22T05:00:00+00:00"}


class Receiver(BaseHTTPRequestHandler):
    answers: ClassVar[list[int]] = []
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []
    location: ClassVar[str] = ""  # sent with a 3xx answer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        status = type(self).answers.pop(0) if type(self).answers else 200
        self.send_response(status)
        if 300 <= status < 400:
            self.send_header("Location", type(self).location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class Bystander(Receiver):
    """A second server on loopback, where nothing may arrive."""

    answers: ClassVar[list[int]] = []
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []


def serve(handler: type[Receiver], tls: ssl.SSLContext | None = None) -> Iterator[HTTPServer]:
    handler.answers, handler.received, handler.location = [], [], ""
    server = HTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def receiver() -> Iterator[str]:
    for server in serve(Receiver):
        yield f"http://127.0.0.1:{server.server_port}/hook"


@pytest.fixture
def bystander() -> Iterator[str]:
    for server in serve(Bystander):
        yield f"http://127.0.0.1:{server.server_port}/inside"


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


# --- the address actually connected to (DNS rebinding), and redirects (issue 11) ---

class Resolver:
    """Stands in for DNS: `answers[name]` is the list of answers given to successive lookups (the
    last one repeats); other names go to the real resolver. `lookups` counts lookups by name."""

    def __init__(self) -> None:
        self.answers: dict[str, list[list[str]]] = {}
        self.lookups: dict[str, int] = {}
        self.real = socket.getaddrinfo

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host not in self.answers:
            return self.real(host, port, *args, **kwargs)
        self.lookups[host] = self.lookups.get(host, 0) + 1
        queue = self.answers[host]
        addresses = queue.pop(0) if len(queue) > 1 else queue[0]
        port = int(port or 0)
        return [(socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (a, port, 0, 0))
                if ":" in a else (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (a, port))
                for a in addresses]


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Resolver:
    resolver = Resolver()
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    return resolver


def port_of(url: str) -> int:
    return httpx.URL(url).port or 80


def test_a_name_that_rebinds_inward_at_connection_time_is_refused(receiver: str, dns: Resolver) -> None:
    dns.answers["rebind.example"] = [["93.184.216.34"], ["127.0.0.1"]]  # public when checked, then not
    url = f"http://rebind.example:{port_of(receiver)}/hook"
    with pytest.raises(Refused, match=r"rebind\.example resolves to a non-public address \(127\.0\.0\.1"):
        deliver(WebhookTarget(url=url, secret="x"), EVENT)
    assert Receiver.received == []
    assert dns.lookups["rebind.example"] == 2  # the early check, then the connection's own lookup


def test_the_connection_goes_to_the_address_that_was_checked(
        monkeypatch: pytest.MonkeyPatch, receiver: str, dns: Resolver) -> None:
    """One lookup per connection, and the socket is opened to an address from that lookup: a third
    answer (inward) is never asked for, and nothing reaches the loopback server."""
    dns.answers["rebind.example"] = [["93.184.216.34"], ["93.184.216.34"], ["127.0.0.1"]]
    dialled: list[str] = []

    def dial(self: Any, host: str, port: int, *args: Any) -> Any:
        dialled.append(host)
        raise httpcore.ConnectError("no network in this test")

    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", dial)
    url = f"http://rebind.example:{port_of(receiver)}/hook"
    with pytest.raises(Retryable):
        deliver(WebhookTarget(url=url, secret="x"), EVENT, timeout=2)
    assert dialled == ["93.184.216.34"] and dns.lookups["rebind.example"] == 2
    assert Receiver.received == []


@pytest.mark.parametrize("addresses", [["127.0.0.1"], ["::1"], ["169.254.169.254"], ["10.1.2.3"],
                                       ["::ffff:127.0.0.1"], ["0.0.0.0"], ["224.0.0.1"],
                                       ["64:ff9b::7f00:1"], ["93.184.216.34", "127.0.0.1"]])
def test_a_name_resolving_inward_is_refused_at_check_and_at_connection(
        receiver: str, dns: Resolver, addresses: list[str]) -> None:
    dns.answers["inward.example"] = [addresses]
    url = f"http://inward.example:{port_of(receiver)}/hook"
    with pytest.raises(Refused, match="non-public address"):
        deliver(WebhookTarget(url=url, secret="x"), EVENT)
    with httpx.Client(transport=outside_transport()) as client, \
            pytest.raises(Refused, match="non-public address"):
        client.post(url, content=b"{}")  # the transport alone, without the early check
    assert Receiver.received == []


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_not_followed_and_not_retried(receiver: str, bystander: str, status: int) -> None:
    Receiver.answers, Receiver.location = [status], bystander
    with pytest.raises(Redirected, match=rf"answered {status} .*{bystander}.*not followed") as caught:
        deliver(WebhookTarget(url=receiver, secret="x"), EVENT, allow_private=True)
    assert isinstance(caught.value, Refused) and not isinstance(caught.value, Retryable)
    assert len(Receiver.received) == 1 and Bystander.received == []


def test_with_allow_private_a_name_on_loopback_receives_the_event(receiver: str, dns: Resolver) -> None:
    dns.answers["hook.example"] = [["127.0.0.1"], ["192.0.2.1"]]  # a second lookup would go nowhere
    url = f"http://hook.example:{port_of(receiver)}/hook"
    assert deliver(WebhookTarget(url=url, secret="x"), EVENT, allow_private=True, timeout=2) == 200
    (headers, body), = Receiver.received
    assert headers["Host"] == f"hook.example:{port_of(receiver)}" and json.loads(body) == EVENT
    assert dns.lookups["hook.example"] == 1


@pytest.fixture
def certificate(tmp_path: Path) -> Path:
    pem = tmp_path / "hook.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=hook.example", "-addext", "subjectAltName=DNS:hook.example",
                    "-keyout", str(pem), "-out", str(pem)], check=True, capture_output=True)
    return pem


def test_tls_is_checked_against_the_name_not_the_address(certificate: Path, dns: Resolver) -> None:
    names: list[str | None] = []
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(certificate)
    tls.sni_callback = lambda _sock, name, _ctx: names.append(name)  # type: ignore[assignment,return-value]
    trust = ssl.create_default_context(cafile=str(certificate))
    dns.answers["hook.example"] = dns.answers["other.example"] = [["127.0.0.1"]]
    for server in serve(Receiver, tls):
        with httpx.Client(transport=outside_transport(allow_private=True, verify=trust)) as client:
            r = client.post(f"https://hook.example:{server.server_port}/hook", content=b"{}")
            assert r.status_code == 200 and names == ["hook.example"]
            assert Receiver.received[0][0]["Host"] == f"hook.example:{server.server_port}"
            with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
                client.post(f"https://other.example:{server.server_port}/hook", content=b"{}")
        assert len(Receiver.received) == 1
