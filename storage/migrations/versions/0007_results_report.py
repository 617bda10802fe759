"""results/report: dossier results (dossier_results) and the digitization report's flags on
dossiers (received_on, received_month, digitized, full_components, signed, result_version)

Revision ID: 0007
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dossier_results",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("pdf_key", sa.String(length=512), nullable=False),
        sa.Column("manifest_key", sa.String(length=512), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["code"], ["dossiers.code"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("code", "version"),
    )
    op.create_index(op.f("ix_dossier_results_batch_id"), "dossier_results", ["batch_id"],
                    unique=False)
    op.create_index(op.f("ix_dossier_results_created_at"), "dossier_results", ["created_at"],
                    unique=False)
    with op.batch_alter_table("dossiers") as batch:
        batch.add_column(sa.Column("received_on", sa.Date(), nullable=True))
        batch.add_column(sa.Column("received_month", sa.String(length=7), nullable=True))
        batch.add_column(sa.Column("digitized", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("full_components", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("signed", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("result_version", sa.Integer(), nullable=True))
    op.create_index("ix_dossiers_agency_received_on", "dossiers", ["agency", "received_on"],
                    unique=False)
    op.create_index("ix_dossiers_report", "dossiers",
                    ["received_on", "agency", "received_month", "withdrawn_to", "digitized",
                     "full_components", "signed", "result_version"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_dossiers_report", table_name="dossiers")
    op.drop_index("ix_dossiers_agency_received_on", table_name="dossiers")
    with op.batch_alter_table("dossiers") as batch:
        for name in ("result_version", "signed", "full_components", "digitized",
                     "received_month", "received_on"):
            batch.drop_column(name)
    op.drop_index(op.f("ix_dossier_results_created_at"), table_name="dossier_results")
    op.drop_index(op.f("ix_dossier_results_batch_id"), table_name="dossier_results")
    op.drop_table("dossier_results")
