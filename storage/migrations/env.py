"""Alembic environment: the catalog, API keys and audit log tables, one database."""

from alembic import context
from sqlalchemy import create_engine

from api.keys import KeyBase
from api.web.users import UserBase
from storage.audit import AuditBase
from storage.catalog import Base
from storage.leases import LeaseRow  # noqa: F401  (registers the leases table on Base)

target_metadata = [Base.metadata, KeyBase.metadata, AuditBase.metadata, UserBase.metadata]
config = context.config
url = config.get_main_option("sqlalchemy.url")
if not url:
    from ingest.settings import Settings

    url = Settings().catalog_url

engine = create_engine(url)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
