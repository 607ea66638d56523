"""the service's clock: its speed and the instant it started

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 11:40:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clock",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("speed", sa.Float(), nullable=False),
        sa.Column("real_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_clock_one_clock")),
        sa.CheckConstraint("speed > 0", name=op.f("ck_clock_clock_speed_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clock")),
    )


def downgrade() -> None:
    op.drop_table("clock")
