"""schedules can be paused and remember their last success

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 09:20:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# A schedule's last success, from the runs kept so far: without it every schedule would look
# stale until its next image, and the stale gauge would page operators on the upgrade.
BACKFILL = """
UPDATE schedules SET last_success_at = done.finished_at
FROM (
    SELECT schedule_id, max(finished_at) AS finished_at
    FROM runs WHERE state = 'done' AND schedule_id IS NOT NULL
    GROUP BY schedule_id
) AS done
WHERE schedules.id = done.schedule_id
"""


def upgrade() -> None:
    op.add_column("schedules", sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "schedules", sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.execute(BACKFILL)
    op.create_index("ix_schedules_last_success_at", "schedules", ["last_success_at"], unique=False)
    # The tick reads due schedules in next_run_at order: paused ones, whose next_run_at stays
    # in the past, would lie at the head of a full index and be stepped over at every tick.
    op.drop_index("ix_schedules_next_run_at", table_name="schedules")
    op.create_index(
        "ix_schedules_next_run_at",
        "schedules",
        ["next_run_at"],
        unique=False,
        postgresql_where="paused_at IS NULL",
    )


def downgrade() -> None:
    op.drop_index("ix_schedules_next_run_at", table_name="schedules")
    op.create_index("ix_schedules_next_run_at", "schedules", ["next_run_at"], unique=False)
    op.drop_index("ix_schedules_last_success_at", table_name="schedules")
    op.drop_column("schedules", "last_success_at")
    op.drop_column("schedules", "paused_at")
