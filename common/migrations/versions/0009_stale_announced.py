"""schedules remember when their tenant was told they went stale

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 10:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# Schedules stale at the upgrade count as told: a webhook set before it learns of a schedule
# that goes stale from now on, not of every one already stale.
MARK_STALE_AS_TOLD = """
UPDATE schedules SET stale_announced_at = now()
WHERE paused_at IS NULL AND (
    (day_of_week IS NULL AND created_at < now() - interval '1 day'
     AND (last_success_at IS NULL OR last_success_at < now() - interval '36 hours'))
    OR (day_of_week IS NOT NULL AND created_at < now() - interval '7 days'
     AND (last_success_at IS NULL OR last_success_at < now() - interval '7 days 12 hours'))
)
"""


def upgrade() -> None:
    op.add_column(
        "schedules", sa.Column("stale_announced_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.execute(MARK_STALE_AS_TOLD)


def downgrade() -> None:
    op.drop_column("schedules", "stale_announced_at")
