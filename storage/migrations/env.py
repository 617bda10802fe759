"""Alembic environment: every table of sohoa's one database (storage/tables.py).

The database is the one `storage.migrate.config(url)` names; run from the command line
(`alembic -c storage/migrations/alembic.ini ...`), the one in SOHOA_DATABASE_URL.
"""

import os

from alembic import context
from sqlalchemy import create_engine

from storage.tables import METADATA, alembic_include_name

config = context.config
url = config.get_main_option("sqlalchemy.url") or os.environ.get("SOHOA_DATABASE_URL")
if not url:
    raise SystemExit("no database to migrate: set SOHOA_DATABASE_URL (sohoa itself migrates "
                     "every database it opens, with storage.migrate.upgrade(url))")

engine = create_engine(url)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=METADATA,
                      render_as_batch=True, include_name=alembic_include_name)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
