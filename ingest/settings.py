"""All options in one validated object, read from `SOHOA_*` environment variables."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ingest.webhooks import WebhookTarget
from ocr.dossier_code import STRICT, TOLERANT
from ocr.symbologies import SYMBOLOGIES, lookup
from scanners.config import EmailConfig, FolderConfig, FtpConfig, ScannerConfig


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


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SOHOA_", extra="ignore", env_nested_delimiter="__")

    data_dir: Path = Path("data")
    database_url: str | None = None  # default: SQLite file in data_dir
    # Dossier-code grammar: "tolerant" (DOMAIN.md), "strict", or a regular expression of your own
    # with named groups agency, date and seq.
    dossier_code_grammar: str = "tolerant"
    separator_barcodes: list[str] = Field(default_factory=lambda: ["PATCHT"])
    # split (results): the "KẾT QUẢ" sheet; the pages after it, up to the next separator sheet,
    # are the result of the dossier whose code they carry (ingest/split.py)
    result_separator_barcodes: list[str] = Field(default_factory=lambda: ["SOHOA-RESULT"])
    # zxing-cpp reads more than pyzbar, faster (BENCHMARKS.md); add "pyzbar" for a second try.
    barcode_engines: list[str] = Field(default_factory=lambda: ["zxing-cpp"])
    barcode_formats: list[str] = Field(default_factory=lambda: ["Code128", "Code39", "QRCode"])
    # Tesseract languages: vie first; pages it reads below the threshold get a vie+eng reading.
    ocr_languages: str = "vie"
    ocr_second_languages: str = "vie+eng"  # "" disables the second reading
    ocr_second_reading_below: float = 90.0
    ocr_timeout_s: int = 300
    # "library": libtesseract loaded once per worker (saves ~0.2 s of model loading per page);
    # "cli": one `tesseract` program run per page. Same results (BENCHMARKS.md).
    ocr_engine: Literal["library", "cli"] = "library"
    # Scans finer than this are OCR'd from a copy downscaled to it (0: as scanned); the stored page
    # keeps its resolution. 200 dpi reads as well as 300 in a quarter less time (BENCHMARKS.md).
    ocr_max_dpi: int = Field(default=200, ge=0)
    # OCR confidence (0..100) under which an upright page is also tried upside down.
    upside_down_check_below: float = 80.0
    max_skew_degrees: float = 15.0
    blank_ink_threshold: float = 0.0001
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1)
    max_page_pixels: int = 150_000_000
    max_pages: int = Field(default=2000, ge=1)  # longer files fail as too_many_pages
    # Seconds poppler may spend drawing one PDF page (300,000 vector strokes take minutes); past
    # them the drawing is stopped and the page fails as too_complex.
    render_seconds: float = Field(default=60.0, gt=0)
    fallback_dpi: int = 300
    jpeg_quality: int = Field(default=80, ge=30, le=95)  # page images in the dossier PDFs
    max_upload_mb: int = 2048  # API uploads larger than this are refused (413)
    # Pages of one batch queued or in a worker's hands at a time (ingest/tasks.py): a batch sent
    # after others waits behind at most this many pages of each. Give it at least the number of
    # worker processes of all machines, or one batch alone cannot keep them all busy.
    pages_in_flight: int = Field(default=8, ge=1, le=10_000)
    timezone_offset: str = "+07:00"  # receipts print local time (Vietnam, no DST)

    # Celery broker for `sohoa worker`: redis://..., amqp://...; default: SQLite file in data_dir.
    broker_url: str | None = None
    # The queue of this installation's tasks: two installations (or test runs) sharing a broker
    # each need their own.
    broker_queue: str = Field(default="sohoa", pattern=r"^[A-Za-z0-9._-]{1,100}$")

    @property
    def broker(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{self.data_dir.resolve() / 'broker.sqlite3'}"

    # SOHOA_RECOVERY='{"lease_s": 60, "tick_s": 15}' or SOHOA_RECOVERY__LEASE_S=60
    recovery: RecoveryConfig = Field(default_factory=RecoveryConfig)

    # Webhooks: JSON list of {"url", "secret", "agencies"}; see ingest/webhooks.py.
    webhooks: list[WebhookTarget] = Field(default_factory=list)
    webhook_allow_private: bool = False

    # Registry hook: URL template with {code}; unknown codes go to review (ingest/registry.py).
    registry_url: str | None = None
    registry_token: str = ""
    registry_allow_private: bool = False

    # MinIO / S3: set the endpoint to use it instead of the local disk.
    s3_endpoint: str | None = None  # host:port
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_bucket: str = "sohoa"
    s3_secure: bool = True
    s3_region: str | None = None
    s3_object_lock: bool = False  # WORM: dossier objects get a COMPLIANCE retention
    retention_days: int = 0  # default retention of dossier objects (0 = none)
    # Per procedure (code such as "1.000948" or its name as printed): days of retention.
    retention_by_procedure: dict[str, int] = Field(default_factory=dict)

    def retention_for(self, procedure: str | None) -> int | None:
        days = self.retention_by_procedure.get(procedure or "", self.retention_days)
        return days or None

    # eSCL scanners by URL: JSON list of {"url", "name", "uuid", "agency", ...}
    # (scanners/devices.py); more are found over mDNS unless discovery is off.
    scanners: list[ScannerConfig] = Field(default_factory=list)
    scanner_discovery: bool = True
    scanner_discovery_seconds: float = Field(default=2.0, ge=0.2, le=30)
    scanner_timeout_s: float = Field(default=30.0, ge=1, le=600)

    # Push receivers, each off until configured; JSON, or one field at a time (SOHOA_FTP__PORT=2121).
    # SOHOA_FOLDER='{"devices": {"mfp-1": "/srv/scans/mfp-1"}}'   (scanners/folder.py)
    folder: FolderConfig | None = None
    # SOHOA_FTP='{"accounts": [{"device": "mfp-1", "username": "mfp1", "password": "..."}],
    #             "host": "0.0.0.0", "port": 2121, "passive_ports": [60000, 60100]}'   (scanners/ftp.py)
    ftp: FtpConfig | None = None
    # SOHOA_SMTP='{"senders": {"scanner@office.example": "mfp-1"}, "host": "0.0.0.0", "port": 2525}'
    smtp: EmailConfig | None = None

    # The back-office web app (api/web): login sessions end after web_session_idle_hours without a
    # request and web_session_max_hours after login; cookies are HTTPS-only with web_secure_cookies
    # (set it when served over TLS). web_login_max_failures failed logins per username and address
    # within web_login_window_s answer 429 until the window passes. web_trusted_origins: extra
    # origins (https://host) accepted for form posts, e.g. behind a proxy that rewrites Host.
    web_secure_cookies: bool = False
    web_session_idle_hours: float = Field(default=8.0, gt=0)
    web_session_max_hours: float = Field(default=24.0, gt=0)
    web_login_max_failures: int = Field(default=5, ge=1)
    web_login_window_s: int = Field(default=300, ge=1)
    web_trusted_origins: list[str] = Field(default_factory=list)

    @property
    def spool_dir(self) -> Path:
        """Where scanner pages wait until their original is stored (scanners/spool.py)."""
        return self.data_dir / "spool"

    @field_validator("dossier_code_grammar")
    @classmethod
    def _known_or_regex(cls, v: str) -> str:
        import re

        pattern = {"tolerant": TOLERANT, "strict": STRICT}.get(v, v)
        try:
            compiled = re.compile(pattern)
        except re.error as e:
            raise ValueError(f"not a regular expression: {e}") from e
        if not {"agency", "date", "seq"} <= set(compiled.groupindex):
            raise ValueError("the grammar needs named groups agency, date and seq")
        return v

    @field_validator("barcode_engines")
    @classmethod
    def _known_engines(cls, v: list[str]) -> list[str]:
        unknown = set(v) - {"zxing-cpp", "pyzbar"}
        if unknown or not v:
            raise ValueError(f"barcode engines are zxing-cpp and/or pyzbar, not {sorted(unknown)}")
        return v

    @field_validator("barcode_formats")
    @classmethod
    def _known_formats(cls, v: list[str]) -> list[str]:
        """Names of ocr/symbologies.py's table (any case, stored as the table spells them): a typo
        stops the start with the known names instead of failing every page."""
        if not v:  # zxing-cpp would read every format, zbar none
            raise ValueError("barcode formats: name at least one; known: "
                             + ", ".join(s.name for s in SYMBOLOGIES))
        return list(dict.fromkeys(lookup(name).name for name in v))

    @field_validator("workers")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v < 1:
            raise ValueError("workers must be at least 1")
        return v

    @property
    def dossier_code_pattern(self) -> str:
        return {"tolerant": TOLERANT, "strict": STRICT}.get(self.dossier_code_grammar,
                                                            self.dossier_code_grammar)

    @property
    def catalog_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'catalog.sqlite3'}"


@cache
def get_settings() -> Settings:
    return Settings()
