"""Webhooks: tell processing systems of each new dossier version, signed, retried, never inward.

A delivery POSTs the feed event (the same JSON as `GET /api/v1/events` items) with
    X-Sohoa-Event: created | new_version
    X-Sohoa-Timestamp: unix seconds
    X-Sohoa-Signature: sha256=HMAC-SHA256(secret, "{timestamp}.{body}")
so the receiver can check origin and freshness. Deliveries run as Celery tasks with exponential
backoff. Destinations that resolve to private, loopback, link-local or reserved addresses are
refused (a webhook must not become a way into the office network) unless
SOHOA_WEBHOOK_ALLOW_PRIVATE is set.

The refusal holds for the address actually connected to, not only for the name: a name can resolve
to a public address when it is checked and to 127.0.0.1 a moment later when the HTTP client resolves
it again (DNS rebinding). So the connection itself is made by `OutsideOnlyBackend`, which resolves
the name once, refuses if any of its addresses is not public, and connects to one of exactly those
checked addresses; the URL is untouched, so the Host header and TLS (SNI, certificate check) still
use the name. Redirects are never followed: a 3xx answer is a failed delivery (`Redirected`, not
retried), since its Location could point inward and a moved receiver needs a corrected URL.
Deliveries connect directly, never through HTTP(S)_PROXY: through a proxy, the proxy would pick the
address and nothing here could check it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import BaseModel

if TYPE_CHECKING:
    import ssl

    import httpcore
    import httpx

log = logging.getLogger(__name__)

NAT64 = ipaddress.ip_network("64:ff9b::/96")  # the well-known NAT64 prefix: an IPv4 address inside


class WebhookTarget(BaseModel):
    url: str
    secret: str
    agencies: list[str] = ["*"]  # agency codes whose dossiers this receiver may hear about

    def wants(self, agency: str) -> bool:
        return "*" in self.agencies or agency in self.agencies


class Refused(Exception):
    """The destination is not allowed: not retried."""


class Redirected(Refused):
    """The receiver answered 3xx. Redirects are not followed, and the delivery is not retried: the
    configured URL is wrong (or the receiver points elsewhere, perhaps inward) until someone fixes it."""


class Retryable(Exception):
    """The receiver is down or answered 5xx/429: retried with backoff."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def inward(address: str) -> str | None:
    """Why `address` is not a public destination ("loopback", "private", ...), or None if it is.
    IPv6 forms that carry an IPv4 address are judged by it: IPv4-mapped ::ffff:a.b.c.d and NAT64
    64:ff9b::a.b.c.d (reaching an IPv4 host) by it alone, 6to4 2002:: by it as well."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None or ip in NAT64:  # really an IPv4 destination
            embedded = ip.ipv4_mapped or ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
            return None if (why := inward(str(embedded))) is None else f"{why} ({embedded} inside)"
        if ip.sixtofour is not None and (why := inward(str(ip.sixtofour))):
            return f"{why} ({ip.sixtofour} inside)"
        if ip.is_site_local:
            return "site-local"
    for why, hit in (("unspecified", ip.is_unspecified), ("loopback", ip.is_loopback),
                     ("link-local", ip.is_link_local), ("multicast", ip.is_multicast),
                     ("private", ip.is_private), ("reserved", ip.is_reserved),
                     ("not globally routable", not ip.is_global)):
        if hit:
            return why
    return None


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, from one lookup, in the resolver's order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(sockaddr[0]) for _, _, _, _, sockaddr in infos))


def outside_addresses(host: str, port: int) -> list[str]:
    """`resolve(host, port)`, Refused if any of the addresses is not public (a name that also
    points inward is not trusted); socket.gaierror if the name does not resolve."""
    addresses = resolve(host, port)
    for address in addresses:
        if why := inward(address):
            raise Refused(f"{host} resolves to a non-public address ({address}: {why})")
    return addresses


def check_destination(url: str, allow_private: bool = False) -> None:
    """An early check of a URL (scheme, and where its name resolves now). It cannot promise where a
    later connection goes; `OutsideOnlyBackend` checks that, at connection time."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as e:
        raise Refused(f"bad port in {url!r}") from e
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused(f"not an http(s) URL: {url!r}")
    if allow_private:
        return
    try:
        outside_addresses(parts.hostname, port)
    except socket.gaierror as e:
        raise Retryable(f"cannot resolve {parts.hostname}: {e}") from e


class OutsideOnlyBackend:
    """An httpcore network backend (the object httpcore asks for each new TCP connection) that
    connects only to addresses it has checked itself: `host` is resolved once, every address is
    checked (`outside_addresses`; skipped with allow_private), and the socket is opened to one of
    those addresses, never to the name, so nothing resolves it again between check and connection.
    httpcore then does TLS over that socket with server_hostname = the URL's name, so SNI and the
    certificate check are on the name, and the Host header comes from the URL as usual."""

    def __init__(self, allow_private: bool = False) -> None:
        import httpcore

        self.allow_private = allow_private
        self._plain = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        import httpcore

        try:
            addresses = resolve(host, port) if self.allow_private else outside_addresses(host, port)
        except socket.gaierror as e:
            raise httpcore.ConnectError(f"cannot resolve {host}: {e}") from e
        error: Exception = httpcore.ConnectError(f"{host} has no address")
        for address in addresses:  # an address literal: create_connection does no lookup
            try:
                return self._plain.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as e:
                error = e
        raise error

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        raise Refused("webhooks do not connect to unix sockets")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def outside_transport(allow_private: bool = False,
                      verify: ssl.SSLContext | bool = True) -> httpx.HTTPTransport:
    """An httpx transport whose every connection goes through `OutsideOnlyBackend`, without proxies.
    httpx has no public way to give its transport a network backend, so the connection pool it
    builds is replaced by one built the same way with ours (httpcore's public constructor); if a
    new httpx no longer keeps its pool in `_pool`, this fails loudly instead of going unchecked."""
    import httpcore
    import httpx

    transport = httpx.HTTPTransport(verify=verify, trust_env=False)
    if not isinstance(getattr(transport, "_pool", None), httpcore.ConnectionPool):
        raise RuntimeError("this httpx keeps its connection pool elsewhere: webhooks cannot check "
                           "the addresses they connect to")
    # trust_env here only lets SSL_CERT_FILE / SSL_CERT_DIR name the trusted CAs, as before
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(verify=verify, trust_env=True),
        network_backend=OutsideOnlyBackend(allow_private))  # duck-typed: httpcore calls connect_tcp
    return transport


def deliver(target: WebhookTarget, event: dict[str, Any], allow_private: bool = False,
            timeout: float = 10.0) -> int:
    import httpx  # here: loading it costs every sohoa process ~60 ms

    check_destination(target.url, allow_private)  # early and clear; the binding check is at connection
    body = json.dumps(event, ensure_ascii=False, sort_keys=True).encode()
    ts = int(time.time())
    headers = {"Content-Type": "application/json", "X-Sohoa-Event": event["kind"],
               "X-Sohoa-Timestamp": str(ts), "X-Sohoa-Signature": sign(target.secret, ts, body)}
    try:
        with httpx.Client(transport=outside_transport(allow_private), timeout=timeout,
                          follow_redirects=False, trust_env=False) as client:
            r = client.post(target.url, content=body, headers=headers)
    except httpx.HTTPError as e:
        raise Retryable(f"{target.url}: {e}") from e
    if r.status_code >= 500 or r.status_code == 429:
        raise Retryable(f"{target.url} answered {r.status_code}")
    if 300 <= r.status_code < 400:
        raise Redirected(f"{target.url} answered {r.status_code} (redirect to "
                         f"{r.headers.get('location', '(no Location)')!r}); redirects are not followed "
                         "and the event is not retried: set the webhook URL to the receiver itself")
    if r.status_code >= 400:
        log.warning("webhook %s refused the event: %s", target.url, r.status_code)
    return r.status_code
