"""runs carry a reason code beside their error text

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 09:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Runs ended (or waiting again) before this revision get the code their error text stands
# for, so that the failure metrics over the kept history do not change; the first match wins.
BACKFILL = """
UPDATE runs SET reason = CASE
    WHEN state = 'timed_out' OR lower(error) LIKE '%timed out%' THEN 'timeout'
    WHEN state = 'cancelled' AND lower(error) LIKE '%no longer exists%' THEN 'server_gone'
    WHEN state = 'cancelled' THEN 'cancelled'
    WHEN state IN ('skipped', 'pending') AND lower(error) LIKE '%busy%' THEN 'busy'
    WHEN state = 'skipped' THEN 'missed_window'
    WHEN lower(error) LIKE '%create failed%' THEN 'create_error'
    WHEN lower(error) LIKE '%error%' THEN 'image_error'
    WHEN lower(error) LIKE '%disappeared%' THEN 'image_missing'
END
WHERE state IN ('failed', 'timed_out', 'skipped', 'cancelled')
   OR (state = 'pending' AND error IS NOT NULL)
"""


def upgrade() -> None:
    op.add_column("runs", sa.Column("reason", sa.String(length=32), nullable=True))
    op.execute(BACKFILL)


def downgrade() -> None:
    op.drop_column("runs", "reason")
