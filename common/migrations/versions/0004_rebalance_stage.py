"""rebalance jobs show the planner's stage

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 06:10:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("rebalances", sa.Column("stage", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("rebalances", "stage")
