"""The one place that builds sohoa's services from the settings: the object store, the database's
catalog and audit log, and the dossier versions with their listeners. `Pipeline.from_settings`
puts a pipeline on top of them (this module cannot name the pipeline: ingest/pipeline.py imports
it, and the layers allow no import cycle)."""

from __future__ import annotations

from dataclasses import dataclass

from ingest.settings import Settings
from ingest.versions import Dossiers, listeners
from storage.audit import AuditLog
from storage.catalog import Catalog
from storage.config import StorageConfig
from storage.objects import LocalObjectStore, ObjectStore


@dataclass(frozen=True)
class Services:
    settings: Settings
    store: ObjectStore
    catalog: Catalog | None
    audit: AuditLog | None
    dossiers: Dossiers


def object_store(config: StorageConfig) -> ObjectStore:
    """S3 when an endpoint is configured, else a folder of the data dir."""
    s3 = config.s3
    if s3.endpoint:
        from storage.s3 import S3ObjectStore  # minio loads only when configured

        return S3ObjectStore.connect(s3.endpoint, s3.access_key, s3.secret_key, s3.bucket,
                                     s3.secure, s3.region, s3.object_lock)
    return LocalObjectStore(config.data_dir / "objects")


def build(settings: Settings, with_catalog: bool = True) -> Services:
    """Everything a process needs; `with_catalog=False` (a page worker) opens no database and
    hears no dossier changes."""
    config = settings.storage
    config.data_dir.mkdir(parents=True, exist_ok=True)
    store = object_store(config)
    if not with_catalog:
        return Services(settings, store, None, None, Dossiers(settings, store))
    catalog = Catalog(config.catalog_url)
    audit = AuditLog(config.catalog_url, store)
    announce = None
    if settings.webhooks.targets:  # deliveries are queued for the workers, retried there
        from ingest import broker  # Celery loads only when configured

        announce = broker.announce
    dossiers = Dossiers(settings, store, catalog, listeners(catalog, audit, announce))
    return Services(settings, store, catalog, audit, dossiers)
