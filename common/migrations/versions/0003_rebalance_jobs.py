"""rebalance jobs

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 09:12:40.118203
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rebalances",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("summary", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "state IN ('queued', 'running', 'done', 'failed')",
            name=op.f("ck_rebalances_state_known"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rebalances")),
    )
    op.create_index("ix_rebalances_requested_at", "rebalances", ["requested_at"], unique=False)
    op.create_index(
        "uq_rebalances_active",
        "rebalances",
        [sa.text("(true)")],
        unique=True,
        postgresql_where=sa.text("state IN ('queued', 'running')"),
    )


def downgrade() -> None:
    op.drop_index(
        "uq_rebalances_active",
        table_name="rebalances",
        postgresql_where=sa.text("state IN ('queued', 'running')"),
    )
    op.drop_index("ix_rebalances_requested_at", table_name="rebalances")
    op.drop_table("rebalances")
