"""All options in one validated object, composed of one small model per concern, each owned by
its layer: `ocr` and `barcodes` (ocr/config.py), `storage` (storage/config.py), `scanners`
(scanners/config.py), and ingest's and the web app's own below.

Read from `SOHOA_*` environment variables by their flat, documented names (README "Settings":
SOHOA_OCR_LANGUAGES, SOHOA_DATA_DIR, SOHOA_SCANNERS...), which `FLAT` maps to their place; a
section's field may also be given nested (SOHOA_OCR__LANGUAGES) or a section as JSON
(SOHOA_WEB='{"secure_cookies": true}'). The constructor takes the same flat names
(`Settings(data_dir=..., ocr_max_dpi=...)`) or whole sections (`Settings(ocr=OcrConfig(...))`).
A value refused names the flat setting (`ocr_max_dpi`), as the user wrote it."""

from __future__ import annotations

import json
import os
import types
import typing
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from ingest.webhooks import WebhookTarget
from ocr.config import BarcodeConfig, OcrConfig
from scanners.config import ScannersConfig
from storage.config import StorageConfig


class RecoveryConfig(BaseModel):
    """How work stranded by a crash or an outage comes back (ingest/watchdog.py).

    A worker renews its lease on a page every third of `lease_s`; a lease not renewed for
    `lease_s` is dead. The watchdog looks every `tick_s`. A batch stopped by a dependency
    (registry, object store, database) waits `backoff_s`, doubling up to `backoff_max_s`, between
    tries, for as long as it takes."""

    lease_s: float = Field(default=60.0, ge=1, le=3600)
    tick_s: float = Field(default=15.0, ge=0.2, le=600)
    backoff_s: float = Field(default=30.0, ge=0.1, le=3600)
    backoff_max_s: float = Field(default=300.0, ge=1, le=86400)
    # Quick retries of a task in place (2 s, 4 s, 8 s...) before its batch waits.
    task_retries: int = Field(default=3, ge=0, le=20)
    # Redis: an unacknowledged task of a worker that vanished is handed out again after this.
    visibility_timeout_s: int = Field(default=900, ge=60, le=86400)


class BrokerConfig(BaseModel):
    """The Celery broker of `sohoa worker` and how much of a batch it holds (ingest/tasks.py)."""

    # redis://..., amqp://...; default: SQLite file in the data dir (filled in by Settings).
    url: str | None = None
    # The queue of this installation's tasks: two installations (or test runs) sharing a broker
    # each need their own.
    queue: str = Field(default="sohoa", pattern=r"^[A-Za-z0-9._-]{1,100}$")
    # Pages of one batch queued or in a worker's hands at a time: a batch sent after others waits
    # behind at most this many pages of each. Give it at least the number of worker processes of
    # all machines, or one batch alone cannot keep them all busy.
    pages_in_flight: int = Field(default=8, ge=1, le=10_000)


class WebhooksConfig(BaseModel):
    # JSON list of {"url", "secret", "agencies"}; see ingest/webhooks.py.
    targets: list[WebhookTarget] = Field(default_factory=list)
    allow_private: bool = False


class RegistryConfig(BaseModel):
    """Registry hook: URL template with {code}; unknown codes go to review (ingest/registry.py)."""

    url: str | None = None
    token: str = ""
    allow_private: bool = False


class WebConfig(BaseModel):
    """The API and the back-office web app (api/). Login sessions end after session_idle_hours
    without a request and session_max_hours after login; cookies are HTTPS-only with
    secure_cookies (set it when served over TLS). login_max_failures failed logins per username and
    address within login_window_s answer 429 until the window passes. trusted_origins: extra
    origins (https://host) accepted for form posts, e.g. behind a proxy that rewrites Host."""

    max_upload_mb: int = 2048  # API uploads larger than this are refused (413)
    secure_cookies: bool = False
    session_idle_hours: float = Field(default=8.0, gt=0)
    session_max_hours: float = Field(default=24.0, gt=0)
    login_max_failures: int = Field(default=5, ge=1)
    login_window_s: int = Field(default=300, ge=1)
    trusted_origins: list[str] = Field(default_factory=list)


class SigningConfig(BaseModel):
    """The agency's digital signature (ingest/signing.py; `sohoa signer add`). Keys of PKCS#12
    files and every password / PIN live in secrets_dir (default data_dir/secrets, mode 0700,
    files 0600), never in object storage, the database or a log. With tsa_url (an RFC 3161
    timestamp server) signatures are PAdES B-T, else B-B. trust_roots: PEM files (separated by
    commas) of the CAs that `sohoa verify` trusts, also used to embed revocation data."""

    secrets_dir: Path | None = None
    tsa_url: str | None = None
    tsa_timeout_s: float = Field(default=20.0, gt=0, le=600)
    trust_roots: str = ""

    @property
    def trust_root_files(self) -> list[Path]:
        return [Path(p.strip()) for p in self.trust_roots.replace(os.pathsep, ",").split(",")
                if p.strip()]


class MonitoringConfig(BaseModel):
    """Logs and metrics (ingest/logs.py, ingest/metrics.py, api/status_routes.py). log_format:
    text, or json (one object per line with batch_id, page and dossier). `GET /metrics` answers
    admins; metrics_port also serves it without a key on metrics_host (loopback by default),
    for a Prometheus on the same machine or behind a firewall."""

    log_format: Literal["text", "json"] = "text"
    metrics_port: int = Field(default=0, ge=0, le=65535)  # 0: no port of its own
    metrics_host: str = "127.0.0.1"


# The documented flat names (SOHOA_<NAME>, or a constructor keyword) -> their place in the sections.
FLAT: dict[str, tuple[str, ...]] = {
    **{f"ocr_{name}": ("ocr", name) for name in (
        "languages", "second_languages", "second_reading_below", "timeout_s", "engine", "max_dpi")},
    **{name: ("ocr", name) for name in (
        "upside_down_check_below", "max_skew_degrees", "blank_ink_threshold", "max_page_pixels",
        "max_pages", "render_seconds", "fallback_dpi", "jpeg_quality")},
    "barcode_engines": ("barcodes", "engines"),
    "barcode_formats": ("barcodes", "formats"),
    "separator_barcodes": ("barcodes", "separators"),
    "result_separator_barcodes": ("barcodes", "result_separators"),
    "dossier_code_grammar": ("barcodes", "dossier_code_grammar"),
    "data_dir": ("storage", "data_dir"),
    "database_url": ("storage", "database_url"),
    **{f"s3_{name}": ("storage", "s3", name) for name in (
        "endpoint", "access_key", "secret_key", "bucket", "secure", "region", "object_lock",
        "timeout_s")},
    "retention_days": ("storage", "retention_days"),
    "retention_by_procedure": ("storage", "retention_by_procedure"),
    "scanners": ("scanners", "devices"),
    "scanner_discovery": ("scanners", "discovery"),
    "scanner_discovery_seconds": ("scanners", "discovery_seconds"),
    "scanner_timeout_s": ("scanners", "timeout_s"),
    "folder": ("scanners", "folder"),
    "ftp": ("scanners", "ftp"),
    "smtp": ("scanners", "smtp"),
    "broker_url": ("broker", "url"),
    "broker_queue": ("broker", "queue"),
    "pages_in_flight": ("broker", "pages_in_flight"),
    "webhooks": ("webhooks", "targets"),
    "webhook_allow_private": ("webhooks", "allow_private"),
    "registry_url": ("registry", "url"),
    "registry_token": ("registry", "token"),
    "registry_allow_private": ("registry", "allow_private"),
    "max_upload_mb": ("web", "max_upload_mb"),
    **{f"web_{name}": ("web", name) for name in (
        "secure_cookies", "session_idle_hours", "session_max_hours", "login_max_failures",
        "login_window_s", "trusted_origins")},
    **{name: ("signing", name) for name in ("secrets_dir", "tsa_url", "tsa_timeout_s",
                                             "trust_roots")},
    **{name: ("monitoring", name) for name in ("log_format", "metrics_port", "metrics_host")},
}
_FLAT_NAME = {path: name for name, path in FLAT.items()}


def _put(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """Sets `value` at `path`, turning a section given as a model into a dict of its fields."""
    head, *rest = path
    if not rest:
        data[head] = value
        return
    inner = data.get(head)
    if isinstance(inner, BaseModel):
        inner = {name: getattr(inner, name) for name in type(inner).model_fields}
    elif not isinstance(inner, dict):
        inner = {}
    data[head] = inner
    _put(inner, tuple(rest), value)


def _is_section_value(name: str, value: Any) -> bool:
    """`scanners` and `webhooks` name both a flat list and a section: a dict or model is the
    section."""
    return name in Settings.model_fields and isinstance(value, dict | BaseModel)


def nest(values: dict[str, Any]) -> dict[str, Any]:
    """The flat names of `values` moved to their place in the sections (a flat name wins over the
    same field given in its section: it is the more specific)."""
    out = {k: v for k, v in values.items() if k not in FLAT or _is_section_value(k, v)}
    for name, value in values.items():
        if name in FLAT and not _is_section_value(name, value):
            _put(out, FLAT[name], value)
    return out


def _annotation_at(path: tuple[str, ...]) -> Any:
    model: Any = Settings
    annotation: Any = None
    for name in path:
        if not (isinstance(model, type) and issubclass(model, BaseModel)) \
                or name not in model.model_fields:
            return None
        annotation = model.model_fields[name].annotation
        model = next((a for a in (annotation, *typing.get_args(annotation))
                      if isinstance(a, type) and issubclass(a, BaseModel)), annotation)
    return annotation


def _is_complex(annotation: Any) -> bool:
    """Whether an environment value for this type is JSON (a list, a dict, a model)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return any(_is_complex(a) for a in typing.get_args(annotation) if a is not type(None))
    origin = typing.get_origin(annotation)
    if origin in (list, dict, tuple, set):
        return True
    return isinstance(annotation, type) and issubclass(annotation, BaseModel | list | dict)


class _Environment(PydanticBaseSettingsSource):
    """SOHOA_* variables: flat names (FLAT), a section as JSON (SOHOA_RECOVERY), or a section's
    field nested (SOHOA_OCR__LANGUAGES, SOHOA_STORAGE__S3__BUCKET). Values of lists, dicts and
    models are JSON."""

    PREFIX = "SOHOA_"

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ reads every variable at once

    def __call__(self) -> dict[str, Any]:
        found: list[tuple[int, tuple[str, ...], Any]] = []
        for var, raw in os.environ.items():
            if not var.upper().startswith(self.PREFIX):
                continue
            name = var[len(self.PREFIX):].lower()
            if name in FLAT:
                path, rank = FLAT[name], 2
            elif "__" in name:
                path, rank = tuple(name.split("__")), 1
            elif name in Settings.model_fields:
                path, rank = (name,), 0
            else:
                continue
            annotation = _annotation_at(path)
            if annotation is None:
                continue
            value: Any = raw
            if _is_complex(annotation) or name in ("scanners", "webhooks"):
                try:
                    value = json.loads(raw)
                except ValueError as e:
                    raise SettingsError(f"{var} is not valid JSON: {e}") from e
                if rank == 2 and _is_section_value(name, value):
                    path, rank = (name,), 0
            found.append((rank, path, value))
        data: dict[str, Any] = {}
        for _, path, value in sorted(found, key=lambda f: f[0]):  # the more specific last
            if len(path) > 1 and isinstance(_get(data, path[:-1]), dict | None):
                _put(data, path, value)
            elif len(path) == 1:
                data[path[0]] = value if not isinstance(data.get(path[0]), dict) \
                    or not isinstance(value, dict) else {**data[path[0]], **value}
        return data


def _get(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    for name in path:
        if not isinstance(data, dict):
            return None
        data = data.get(name)  # type: ignore[assignment]
    return data


class _Init(PydanticBaseSettingsSource):
    """The constructor's keywords, flat names moved to their sections (so that a keyword overrides
    only its own field of a section the environment also sets)."""

    def __init__(self, settings_cls: type[BaseSettings], init: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self.init = init

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError

    def __call__(self) -> dict[str, Any]:
        return nest(self.init())


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SOHOA_", extra="ignore")

    ocr: OcrConfig = Field(default_factory=OcrConfig)
    barcodes: BarcodeConfig = Field(default_factory=BarcodeConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    scanners: ScannersConfig = Field(default_factory=ScannersConfig)
    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    # SOHOA_RECOVERY='{"lease_s": 60, "tick_s": 15}' or SOHOA_RECOVERY__LEASE_S=60
    recovery: RecoveryConfig = Field(default_factory=RecoveryConfig)
    webhooks: WebhooksConfig = Field(default_factory=WebhooksConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    signing: SigningConfig = Field(default_factory=SigningConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    # Processes of `sohoa run`/`sohoa worker` (default: one per CPU).
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1)
    timezone_offset: str = "+07:00"  # receipts print local time (Vietnam, no DST)
    # Split each dossier into its submitted documents, each stored as its own PDF/A copy
    # (ocr/components.py, ingest/dossier_stages.py); false stores the dossier PDF alone.
    components_enabled: bool = True

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as e:
            raise _named(e) from None

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return _Init(settings_cls, init_settings), _Environment(settings_cls)

    @model_validator(mode="before")
    @classmethod
    def _flat_names(cls, data: Any) -> Any:
        """Flat names given to model_validate (the sources have already nested theirs)."""
        return nest(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _defaults_in_data_dir(self) -> Settings:
        if self.scanners.spool_dir is None:
            self.scanners.spool_dir = self.storage.data_dir / "spool"
        if self.signing.secrets_dir is None:
            self.signing.secrets_dir = self.storage.data_dir / "secrets"
        if self.broker.url is None:
            self.broker.url = f"sqla+sqlite:///{self.storage.data_dir.resolve() / 'broker.sqlite3'}"
        return self

    @field_validator("workers")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v < 1:
            raise ValueError("workers must be at least 1")
        return v


def _named(error: ValidationError) -> ValidationError:
    """The error with each place named by its flat setting (`ocr_max_dpi`, not `ocr.max_dpi`)."""
    details = []
    for item in error.errors():
        loc = tuple(item["loc"])
        for cut in range(len(loc), 0, -1):
            if loc[:cut] in _FLAT_NAME:
                loc = (_FLAT_NAME[loc[:cut]], *loc[cut:])  # type: ignore[index]
                break
        details.append({"type": item["type"], "loc": loc, "input": item["input"],
                        **({"ctx": item["ctx"]} if "ctx" in item else {})})
    return ValidationError.from_exception_data(error.title, details)  # type: ignore[arg-type]


@cache
def get_settings() -> Settings:
    return Settings()
