"""leases: who works on which page or batch right now (storage/leases.py)

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("batch_id", sa.String(length=64), nullable=True),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index(op.f("ix_leases_batch_id"), "leases", ["batch_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_leases_batch_id"), table_name="leases")
    op.drop_table("leases")
