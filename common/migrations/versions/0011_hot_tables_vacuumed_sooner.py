"""schedules and runs: room for in-page updates, and vacuumed at 2% dead rows, not 20%

Every run moves its schedule's next_run_at on and records its success, and every poll moves
its run's next poll on. Each update leaves a dead row version, and an update of an indexed
column a dead entry in every index of the table. The tick reads the next_run_at index a few
times a second: at the default threshold (a fifth of the table dead) a million-schedule fleet
carries up to 200,000 dead entries through each of those reads. Free room in each page lets
an update that changes no indexed column (a run's next poll) stay in its page, leaving no
index entry behind.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 17:50:00.000000
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TABLES = ("schedules", "runs")
# Existing pages keep what they hold; pages written from now on leave a fifth free.
FILLFACTOR = 80
VACUUM_SCALE_FACTOR = 0.02


def upgrade() -> None:
    for table in TABLES:
        op.execute(
            f"ALTER TABLE {table} SET (fillfactor = {FILLFACTOR}, "
            f"autovacuum_vacuum_scale_factor = {VACUUM_SCALE_FACTOR})"
        )


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} RESET (fillfactor, autovacuum_vacuum_scale_factor)")
