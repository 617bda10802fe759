"""signers: each agency's signing key, where it is and whose certificate (storage/signers.py)

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signers",
        sa.Column("agency", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=False),
        sa.Column("pkcs12_path", sa.String(length=1000), nullable=True),
        sa.Column("module", sa.String(length=1000), nullable=True),
        sa.Column("token_label", sa.String(length=200), nullable=True),
        sa.Column("key_label", sa.String(length=200), nullable=True),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("added_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("agency"),
    )


def downgrade() -> None:
    op.drop_table("signers")
