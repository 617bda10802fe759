"""The optional registry hook: ask the processing system whether a dossier code exists.

SOHOA_REGISTRY_URL is a URL template with `{code}`, e.g. `https://igate.example/api/dossiers/{code}`.
200 with JSON means the dossier exists (`lookup` returns its `procedure` and `applicant`; they are
not stored yet); 404 means unknown: the pages go to review instead of becoming a dossier. Anything else
(down, 5xx, timeout) is RegistryUnavailable, a transient error: the batch is finished later.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from ingest.webhooks import Refused, check_destination, outside_transport
from storage.errors import Unavailable


class RegistryUnavailable(Unavailable):
    dependency = "registry"


class Registry:
    def __init__(self, url_template: str, token: str = "", allow_private: bool = False,
                 timeout: float = 10.0) -> None:
        self.template, self.token, self.timeout = url_template, token, timeout
        self.allow_private = allow_private

    def lookup(self, code: str) -> dict[str, Any] | None:
        """The registry's record of `code`, or None if it does not know it."""
        import httpx  # here: loading it costs every sohoa process ~60 ms

        url = self.template.replace("{code}", quote(code, safe=""))
        try:
            check_destination(url, self.allow_private)
        except Refused as e:
            raise RegistryUnavailable(f"registry URL not allowed: {e}") from e
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            # The address actually connected to is checked too (a name that resolves inward
            # at connection time, DNS rebinding), as for webhooks.
            with httpx.Client(transport=outside_transport(self.allow_private),
                              timeout=self.timeout, follow_redirects=False) as client:
                r = client.get(url, headers=headers)
        except Refused as e:
            raise RegistryUnavailable(f"registry URL not allowed: {e}") from e
        except httpx.HTTPError as e:
            raise RegistryUnavailable(f"registry: {e}") from e
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise RegistryUnavailable(f"registry answered {r.status_code} for {code}")
        try:
            data = r.json()
        except ValueError as e:
            raise RegistryUnavailable(f"registry answered non-JSON for {code}") from e
        return {k: data.get(k) for k in ("procedure", "applicant")} if isinstance(data, dict) \
            else {}
