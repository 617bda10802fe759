"""Where sohoa keeps things: the `storage` section of ingest's Settings (flat SOHOA_DATA_DIR,
SOHOA_DATABASE_URL, SOHOA_S3_*, SOHOA_RETENTION_* as documented in README)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field


class S3Config(BaseModel):
    """MinIO / S3: set the endpoint to use it instead of the local disk."""

    endpoint: str | None = None  # host:port
    access_key: str = ""
    secret_key: str = ""
    bucket: str = "sohoa"
    secure: bool = True
    region: str | None = None
    object_lock: bool = False  # WORM: dossier objects get a COMPLIANCE retention
    # Seconds to connect, and to wait for the next bytes of an answer: a connection the network
    # dropped without a word would otherwise hold a page for minio's 5 minutes, five times over.
    timeout_s: float = Field(default=30.0, gt=0)


class StorageConfig(BaseModel):
    data_dir: Path = Path("data")
    database_url: str | None = None  # default: SQLite file in data_dir
    s3: S3Config = Field(default_factory=S3Config)
    retention_days: int = 0  # default retention of dossier objects (0 = none)
    # Per procedure (code such as "1.000948" or its name as printed): days of retention.
    retention_by_procedure: dict[str, int] = Field(default_factory=dict)

    def retention_for(self, procedure: str | None) -> int | None:
        days = self.retention_by_procedure.get(procedure or "", self.retention_days)
        return days or None

    @property
    def catalog_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'catalog.sqlite3'}"
