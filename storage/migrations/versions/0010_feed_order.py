"""the change feed in the order changes reach the catalog: indexed_at on dossier versions,
corrections and results (the existing ones take their own time), and the feed's clock

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

OWN_TIME = {"dossier_versions": "created_at", "corrections": "at", "dossier_results": "created_at"}


def upgrade() -> None:
    for table, own in OWN_TIME.items():
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("indexed_at", sa.DateTime(timezone=True), nullable=True))
            batch.create_index(f"ix_{table}_indexed_at", ["indexed_at"])
        op.execute(f"UPDATE {table} SET indexed_at = {own}")
    op.create_table("feed_clock",
                    sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
                    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
                    sa.PrimaryKeyConstraint("id"))


def downgrade() -> None:
    op.drop_table("feed_clock")
    for table in OWN_TIME:
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f"ix_{table}_indexed_at")
            batch.drop_column("indexed_at")
