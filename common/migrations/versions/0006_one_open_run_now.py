"""at most one run-now per server that has not ended, kept by the database

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 09:10:00.000000
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Parallel run-now requests made before this revision may have left several open run-nows of
# one server. The one furthest along (in flight, else the oldest) stays; the others waiting
# are cancelled, as a second request would have been answered with the first.
CANCEL_DUPLICATES = """
UPDATE runs SET state = 'cancelled', reason = 'cancelled', finished_at = now(),
       lease_until = NULL, error = 'cancelled: another run-now of this server was open'
WHERE trigger = 'manual' AND state = 'pending'
  AND EXISTS (
      SELECT 1 FROM runs AS other
      WHERE other.server_id = runs.server_id AND other.trigger = 'manual'
        AND other.state IN ('pending', 'admitted', 'creating', 'saving')
        AND (other.state <> 'pending' OR other.id < runs.id)
  )
"""


def upgrade() -> None:
    op.execute(CANCEL_DUPLICATES)
    op.create_index(
        "uq_runs_server_open_manual",
        "runs",
        ["server_id"],
        unique=True,
        postgresql_where="trigger = 'manual' AND state IN "
        "('pending', 'admitted', 'creating', 'saving')",
    )


def downgrade() -> None:
    op.drop_index("uq_runs_server_open_manual", table_name="runs")
