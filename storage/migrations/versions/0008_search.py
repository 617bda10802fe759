"""search: dossier_search, the ranked search's table (storage/search.py) with its full-text
index (an FTS5 table on SQLite, a tsvector column and GIN indexes on PostgreSQL), filled from
what the catalog holds; dossiers.search (the folded text of the LIKE search) goes

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

from storage import search, tables

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dossiers") as batch:
        batch.drop_column("search")
    op.create_table(
        "dossier_search",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("ids", sa.Text(), nullable=False),
        sa.Column("names", sa.Text(), nullable=False),
        sa.Column("places", sa.Text(), nullable=False),
        sa.Column("procedure", sa.Text(), nullable=False),
        sa.Column("other", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("fields_text", sa.Text(), nullable=False),
        sa.Column("body_text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["code"], ["dossiers.code"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
    )
    bind = op.get_bind()
    tables.search_index_ddl(bind)
    search.fill(bind)


def downgrade() -> None:
    tables.drop_search_index(op.get_bind())
    op.drop_table("dossier_search")
    with op.batch_alter_table("dossiers") as batch:
        batch.add_column(sa.Column("search", sa.Text(), nullable=False, server_default=""))
