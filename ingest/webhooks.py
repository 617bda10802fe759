"""Webhooks: tell processing systems of each new dossier version, signed, retried, never inward.

A delivery POSTs the feed event (the same JSON as `GET /api/v1/events` items) with
    X-Sohoa-Event: created | new_version
    X-Sohoa-Timestamp: unix seconds
    X-Sohoa-Signature: sha256=HMAC-SHA256(secret, "{timestamp}.{body}")
so the receiver can check origin and freshness. Deliveries run as Celery tasks with exponential
backoff. Destinations that resolve to private, loopback, link-local or reserved addresses are
refused (a webhook must not become a way into the office network) unless
SOHOA_WEBHOOK_ALLOW_PRIVATE is set.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel

log = logging.getLogger(__name__)


class WebhookTarget(BaseModel):
    url: str
    secret: str
    agencies: list[str] = ["*"]  # agency codes whose dossiers this receiver may hear about

    def wants(self, agency: str) -> bool:
        return "*" in self.agencies or agency in self.agencies


class Refused(Exception):
    """The destination is not allowed: not retried."""


class Retryable(Exception):
    """The receiver is down or answered 5xx/429: retried with backoff."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def check_destination(url: str, allow_private: bool = False) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused(f"not an http(s) URL: {url!r}")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except socket.gaierror as e:
        raise Retryable(f"cannot resolve {parts.hostname}: {e}") from e
    for info in infos:
        ip = ipaddress.ip_address(info[4][0])
        if not ip.is_global or ip.is_multicast:
            raise Refused(f"{parts.hostname} resolves to a non-public address ({ip})")


def deliver(target: WebhookTarget, event: dict[str, Any], allow_private: bool = False,
            timeout: float = 10.0) -> int:
    import httpx  # here: loading it costs every sohoa process ~60 ms

    check_destination(target.url, allow_private)
    body = json.dumps(event, ensure_ascii=False, sort_keys=True).encode()
    ts = int(time.time())
    headers = {"Content-Type": "application/json", "X-Sohoa-Event": event["kind"],
               "X-Sohoa-Timestamp": str(ts), "X-Sohoa-Signature": sign(target.secret, ts, body)}
    try:
        r = httpx.post(target.url, content=body, headers=headers, timeout=timeout,
                       follow_redirects=False)
    except httpx.HTTPError as e:
        raise Retryable(f"{target.url}: {e}") from e
    if r.status_code >= 500 or r.status_code == 429:
        raise Retryable(f"{target.url} answered {r.status_code}")
    if r.status_code >= 300:
        log.warning("webhook %s refused the event: %s", target.url, r.status_code)
    return r.status_code
