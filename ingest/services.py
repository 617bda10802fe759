"""The one place that builds sohoa's services from the settings: the object store, the database's
catalog and audit log, the signing service, the page stages, and the dossier versions with their
stages and listeners. Each of these takes only its section of the settings (or plain values):
this module hands them out. `Pipeline.from_settings` puts a pipeline on top of them (this module
cannot name the pipeline: ingest/pipeline.py imports it, and the layers allow no import cycle)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ingest.dossier_stages import default_dossier_stages
from ingest.results import default_result_stages
from ingest.settings import Settings
from ingest.signing import AgencySigning
from ingest.versions import Dossiers, Listener, listeners
from ocr.dossier_code import DossierCodeGrammar
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
                                     s3.secure, s3.region, s3.object_lock, s3.timeout_s)
    return LocalObjectStore(config.data_dir / "objects")


def dossiers(settings: Settings, store: ObjectStore, catalog: Catalog | None = None,
             hear: Sequence[Listener] = ()) -> Dossiers:
    """The dossier versions on `store`: the default dossier and result stages (signed by the
    agencies' signers), retention from the `storage` section, `hear` told of every change."""
    signing = AgencySigning.from_settings(settings)
    stages = default_dossier_stages(DossierCodeGrammar(settings.barcodes.dossier_code_pattern),
                                    settings.timezone_offset, settings.components_enabled,
                                    signing)
    return Dossiers(store, stages, default_result_stages(signing), settings.storage, catalog,
                    list(hear))


def build(settings: Settings, with_catalog: bool = True) -> Services:
    """Everything a process needs; `with_catalog=False` (a page worker) opens no database and
    hears no dossier changes."""
    config = settings.storage
    config.data_dir.mkdir(parents=True, exist_ok=True)
    store = object_store(config)
    if not with_catalog:
        return Services(settings, store, None, None, dossiers(settings, store))
    catalog = Catalog(config.catalog_url)
    audit = AuditLog(config.catalog_url, store)
    announce = None
    if settings.webhooks.targets:  # deliveries are queued for the workers, retried there
        from ingest import broker  # Celery loads only when configured

        announce = broker.announce
    found = dossiers(settings, store, catalog, listeners(catalog, audit, announce))
    return Services(settings, store, catalog, audit, found)
