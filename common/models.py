"""The database tables, as SQLAlchemy 2 models; Alembic migrations create them."""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects import postgresql

from common.run_state import IN_FLIGHT, OPEN, RUN_STATES, RunState, in_order


class Base(orm.DeclarativeBase):
    metadata = sa.MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Schedule(Base):
    """One per server: the server id is unique, so the database enforces the rule."""

    __tablename__ = "schedules"

    id: orm.Mapped[int] = orm.mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    tenant_id: orm.Mapped[str] = orm.mapped_column(sa.String(255), nullable=False)
    server_id: orm.Mapped[str] = orm.mapped_column(sa.String(255), nullable=False, unique=True)
    server_name: orm.Mapped[str] = orm.mapped_column(sa.String(255), nullable=False, default="")
    retention: orm.Mapped[int] = orm.mapped_column(sa.Integer, nullable=False)
    # Monday=0 .. Sunday=6; NULL for a daily schedule.
    day_of_week: orm.Mapped[int | None] = orm.mapped_column(sa.SmallInteger, nullable=True)
    # Daily: seconds after 00:00 UTC; weekly: seconds after Monday 00:00 UTC.
    slot_s: orm.Mapped[int] = orm.mapped_column(sa.Integer, nullable=False)
    next_run_at: orm.Mapped[dt.datetime] = orm.mapped_column(
        sa.DateTime(timezone=True), nullable=False
    )
    expected_duration_s: orm.Mapped[float] = orm.mapped_column(sa.Float, nullable=False)
    # Finished images behind expected_duration_s; zero while it is still the default.
    duration_samples: orm.Mapped[int] = orm.mapped_column(
        sa.Integer, nullable=False, default=0, server_default="0"
    )
    server_gone_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(
        sa.DateTime(timezone=True), nullable=True
    )
    # Set while the tenant has paused the schedule: the tick makes no run of it, and
    # next_run_at is stale until a resume plans it again.
    paused_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(
        sa.DateTime(timezone=True), nullable=True
    )
    # When the newest image of the schedule became ACTIVE: a column, not a query over runs,
    # because finished runs are trimmed and staleness is read on every schedule body.
    last_success_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(
        sa.DateTime(timezone=True), nullable=True
    )
    # When its tenant was told it went stale (a schedule.stale event): once a stale spell,
    # cleared by its next success.
    stale_announced_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(
        sa.DateTime(timezone=True), nullable=True
    )
    created_at: orm.Mapped[dt.datetime] = orm.mapped_column(
        sa.DateTime(timezone=True), nullable=False, default=_now
    )
    updated_at: orm.Mapped[dt.datetime] = orm.mapped_column(
        sa.DateTime(timezone=True), nullable=False, default=_now, onupdate=_now
    )

    __table_args__ = (
        sa.CheckConstraint("retention BETWEEN 1 AND 65535", name="retention_range"),
        sa.CheckConstraint("day_of_week BETWEEN 0 AND 6", name="day_of_week_range"),
        sa.CheckConstraint("slot_s >= 0 AND slot_s < 604800", name="slot_range"),
        sa.Index("ix_schedules_tenant_server", "tenant_id", "server_id"),
        # Partial: a paused schedule is never due, so the tick's scan never meets one.
        sa.Index(
            "ix_schedules_next_run_at",
            "next_run_at",
            postgresql_where=sa.text("paused_at IS NULL"),
        ),
        # Stale schedules are those without a recent success: a range of this index.
        sa.Index("ix_schedules_last_success_at", "last_success_at"),
    )


class ServiceSetting(Base):
    """Settings operators change at run time (the in-flight cap), shared by every process."""

    __tablename__ = "service_settings"

    name: orm.Mapped[str] = orm.mapped_column(sa.String(64), primary_key=True)
    value: orm.Mapped[str] = orm.mapped_column(sa.String(255), nullable=False)


class ClockEpoch(Base):
    """The instant the service's clock started and its speed: one row, made by the first
    process of a service whose clock runs at another speed than the wall clock's."""

    __tablename__ = "clock"

    id: orm.Mapped[int] = orm.mapped_column(sa.SmallInteger, primary_key=True, default=1)
    speed: orm.Mapped[float] = orm.mapped_column(sa.Float, nullable=False)
    real_start: orm.Mapped[dt.datetime] = orm.mapped_column(
        sa.DateTime(timezone=True), nullable=False
    )
    start: orm.Mapped[dt.datetime] = orm.mapped_column(sa.DateTime(timezone=True), nullable=False)

    __table_args__ = (
        sa.CheckConstraint("id = 1", name="one_clock"),
        sa.CheckConstraint("speed > 0", name="clock_speed_positive"),
    )


class SimServer(Base):
    """A server of the simulated cloud."""

    __tablename__ = "sim_servers"

    id: orm.Mapped[str] = orm.mapped_column(sa.String(64), primary_key=True)
    tenant_id: orm.Mapped[str] = orm.mapped_column(sa.String(255), nullable=False, index=True)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(255), nullable=False)
    disk_gb: orm.Mapped[int] = orm.mapped_column(sa.Integer, nullable=False)
    # A fault switched on for this server: create_error, image_error, image_hang, busy.
    fault: orm.Mapped[str | None] = orm.mapped_column(sa.String(32), nullable=True)


class SimImage(Base):
    """An image of the simulated cloud; its status follows from its times and fate."""

    __tablename__ = "sim_images"

    id: orm.Mapped[str] = orm.mapped_column(sa.String(64), primary_key=True)
    tenant_id: orm.Mapped[str] = orm.mapped_column(sa.String(255), nullable=False)
    server_id: orm.Mapped[str] = orm.mapped_column(sa.String(64), nullable=False, index=True)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(255), nullable=False)
    image_metadata: orm.Mapped[dict[str, str]] = orm.mapped_column(
        "metadata", postgresql.JSONB, nullable=False
    )
    created_at: orm.Mapped[dt.datetime] = orm.mapped_column(
        sa.DateTime(timezone=True), nullable=False
    )
    saving_at: orm.Mapped[dt.datetime] = orm.mapped_column(
        sa.DateTime(timezone=True), nullable=False
    )
    done_at: orm.Mapped[dt.datetime] = orm.mapped_column(sa.DateTime(timezone=True), nullable=False)
    # What the image becomes at done_at: ACTIVE, ERROR, or SAVING forever (a hang).
    fate: orm.Mapped[str] = orm.mapped_column(sa.String(16), nullable=False)


class Run(Base):
    """One image of one server: for a schedule and period (unique), or run now by hand."""

    __tablename__ = "runs"

    id: orm.Mapped[int] = orm.mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    schedule_id: orm.Mapped[int | None] = orm.mapped_column(
        sa.BigInteger, sa.ForeignKey("schedules.id", ondelete="SET NULL"), nullable=True
    )
    tenant_id: orm.Mapped[str] = orm.mapped_column(sa.String(255), nullable=False)
    server_id: orm.Mapped[str] = orm.mapped_column(sa.String(255), nullable=False)
    # "schedule" runs are unique per server and period; "manual" ones (run now) are not.
    trigger: orm.Mapped[str] = orm.mapped_column(sa.String(16), nullable=False)
    period: orm.Mapped[dt.date] = orm.mapped_column(sa.Date, nullable=False)
    weekly: orm.Mapped[bool] = orm.mapped_column(sa.Boolean, nullable=False)
    scheduled_for: orm.Mapped[dt.datetime] = orm.mapped_column(
        sa.DateTime(timezone=True), nullable=False
    )
    state: orm.Mapped[str] = orm.mapped_column(
        sa.String(16), nullable=False, default=RunState.PENDING.value
    )
    image_id: orm.Mapped[str | None] = orm.mapped_column(sa.String(64), nullable=True)
    # Set, and committed, before an image is asked for: the image's name carries it, so a
    # redelivered task finds an image made before a crash instead of making a second one.
    attempt_stamp: orm.Mapped[int | None] = orm.mapped_column(sa.BigInteger, nullable=True)
    attempts: orm.Mapped[int] = orm.mapped_column(sa.Integer, nullable=False, default=0)
    error: orm.Mapped[str | None] = orm.mapped_column(sa.Text, nullable=True)
    # The code of `error` (common.run_state.Reason): what metrics label failures by.
    reason: orm.Mapped[str | None] = orm.mapped_column(sa.String(32), nullable=True)
    created_at: orm.Mapped[dt.datetime] = orm.mapped_column(
        sa.DateTime(timezone=True), nullable=False, default=_now
    )
    # A pending run is not admitted before this (back-off after a failure or a busy server).
    not_before: orm.Mapped[dt.datetime] = orm.mapped_column(
        sa.DateTime(timezone=True), nullable=False
    )
    # A pending run not started by then is skipped: its period has passed.
    start_by: orm.Mapped[dt.datetime] = orm.mapped_column(
        sa.DateTime(timezone=True), nullable=False
    )
    admitted_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(
        sa.DateTime(timezone=True), nullable=True
    )
    started_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(
        sa.DateTime(timezone=True), nullable=True
    )
    finished_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(
        sa.DateTime(timezone=True), nullable=True
    )
    # Admitted or creating and no message seen working on it past this: the tick publishes
    # its create again. Saving: when its image is next polled (read it as `next_poll_at`).
    lease_until: orm.Mapped[dt.datetime | None] = orm.mapped_column(
        sa.DateTime(timezone=True), nullable=True
    )
    next_poll_at: orm.Mapped[dt.datetime | None] = orm.synonym("lease_until")
    # Set at the first admission and kept over retries: a run in flight past it times out.
    deadline_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(
        sa.DateTime(timezone=True), nullable=True
    )

    __table_args__ = (
        sa.CheckConstraint(
            "state IN (" + ", ".join(f"'{s}'" for s in RUN_STATES) + ")", name="state_known"
        ),
        sa.CheckConstraint("trigger IN ('schedule', 'manual')", name="trigger_known"),
        # The rule "at most one scheduled image per schedule and period", kept by the database.
        sa.Index(
            "uq_runs_server_period",
            "server_id",
            "period",
            unique=True,
            postgresql_where=sa.text("trigger = 'schedule'"),
        ),
        # And "at most one image in progress per server".
        sa.Index(
            "uq_runs_server_in_flight",
            "server_id",
            unique=True,
            postgresql_where=sa.text(
                "state IN (" + ", ".join(f"'{s}'" for s in in_order(IN_FLIGHT)) + ")"
            ),
        ),
        # And "at most one run-now per server that has not ended": asking again while it waits
        # or runs answers that run, however many ask at once.
        sa.Index(
            "uq_runs_server_open_manual",
            "server_id",
            unique=True,
            postgresql_where=sa.text(
                "trigger = 'manual' AND state IN ("
                + ", ".join(f"'{s}'" for s in in_order(OPEN))
                + ")"
            ),
        ),
        sa.Index("ix_runs_state_not_before", "state", "not_before"),
        sa.Index("ix_runs_server_created", "server_id", "id"),
        sa.Index("ix_runs_finished_at", "finished_at"),
    )


# Rebalance job states. Active: the one rebalance that is waiting or re-planning.
REBALANCE_QUEUED = "queued"
REBALANCE_RUNNING = "running"
REBALANCE_DONE = "done"
REBALANCE_FAILED = "failed"
REBALANCE_ACTIVE = (REBALANCE_QUEUED, REBALANCE_RUNNING)
REBALANCE_STATES = (*REBALANCE_ACTIVE, REBALANCE_DONE, REBALANCE_FAILED)


class Rebalance(Base):
    """A rebalance asked for through the operator API, run by a worker on the plan queue."""

    __tablename__ = "rebalances"

    id: orm.Mapped[uuid.UUID] = orm.mapped_column(postgresql.UUID(as_uuid=True), primary_key=True)
    state: orm.Mapped[str] = orm.mapped_column(
        sa.String(16), nullable=False, default=REBALANCE_QUEUED
    )
    requested_at: orm.Mapped[dt.datetime] = orm.mapped_column(
        sa.DateTime(timezone=True), nullable=False
    )
    started_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(
        sa.DateTime(timezone=True), nullable=True
    )
    finished_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(
        sa.DateTime(timezone=True), nullable=True
    )
    # Starts so far: more than one means a worker was lost mid-rebalance and it ran again.
    attempts: orm.Mapped[int] = orm.mapped_column(sa.Integer, nullable=False, default=0)
    # Queued or running and not started or finished by then (or NULL: never published): the
    # tick publishes it again, so a message lost with the broker or a worker loses no job.
    lease_until: orm.Mapped[dt.datetime | None] = orm.mapped_column(
        sa.DateTime(timezone=True), nullable=True
    )
    # What the planner does, from the start of each of its stages: a running job's progress
    # (near the bound most of a rebalance goes after the placing), and where a failed one was.
    stage: orm.Mapped[str | None] = orm.mapped_column(sa.Text, nullable=True)
    # What rebalance_fleet answered, once done.
    summary: orm.Mapped[dict | None] = orm.mapped_column(postgresql.JSONB, nullable=True)
    error: orm.Mapped[str | None] = orm.mapped_column(sa.Text, nullable=True)

    __table_args__ = (
        sa.CheckConstraint(
            "state IN (" + ", ".join(f"'{s}'" for s in REBALANCE_STATES) + ")",
            name="state_known",
        ),
        # At most one rebalance queued or running, kept by the database: two requests that race
        # past the request lock still cannot both add one.
        sa.Index(
            "uq_rebalances_active",
            sa.text("(true)"),
            unique=True,
            postgresql_where=sa.text("state IN ('queued', 'running')"),
        ),
        sa.Index("ix_rebalances_requested_at", "requested_at"),
    )


# Webhook event states. Pending: waiting for its next attempt (or being attempted).
EVENT_PENDING = "pending"
EVENT_DELIVERED = "delivered"
EVENT_GAVE_UP = "gave_up"
EVENT_STATES = (EVENT_PENDING, EVENT_DELIVERED, EVENT_GAVE_UP)


class Webhook(Base):
    """A tenant's one webhook: where its events go, and the key that signs them."""

    __tablename__ = "webhooks"

    tenant_id: orm.Mapped[str] = orm.mapped_column(sa.String(255), primary_key=True)
    url: orm.Mapped[str] = orm.mapped_column(sa.Text, nullable=False)
    # A shared HMAC key, so it is kept as given (a hash could not sign); never answered or
    # logged. The repr below leaves it out of tracebacks.
    secret: orm.Mapped[str] = orm.mapped_column(sa.String(256), nullable=False)
    created_at: orm.Mapped[dt.datetime] = orm.mapped_column(
        sa.DateTime(timezone=True), nullable=False
    )
    updated_at: orm.Mapped[dt.datetime] = orm.mapped_column(
        sa.DateTime(timezone=True), nullable=False
    )

    def __repr__(self) -> str:
        return f"Webhook(tenant_id={self.tenant_id!r}, url={self.url!r})"


class WebhookEvent(Base):
    """The outbox: an event to deliver, written in the transaction that caused it.

    Its body is built once, so every attempt sends the same bytes under the same event id.
    """

    __tablename__ = "webhook_events"

    id: orm.Mapped[uuid.UUID] = orm.mapped_column(postgresql.UUID(as_uuid=True), primary_key=True)
    tenant_id: orm.Mapped[str] = orm.mapped_column(sa.String(255), nullable=False)
    type: orm.Mapped[str] = orm.mapped_column(sa.String(64), nullable=False)
    # The CloudEvent, JSON text as sent (and signed).
    body: orm.Mapped[str] = orm.mapped_column(sa.Text, nullable=False)
    created_at: orm.Mapped[dt.datetime] = orm.mapped_column(
        sa.DateTime(timezone=True), nullable=False
    )
    state: orm.Mapped[str] = orm.mapped_column(sa.String(16), nullable=False, default=EVENT_PENDING)
    # Pending: not attempted before this. A claimed event's is pushed a lease ahead, so the
    # claim of a worker killed mid-delivery runs out and the event comes back. NULL once final.
    next_attempt_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(
        sa.DateTime(timezone=True), nullable=True
    )
    attempts: orm.Mapped[int] = orm.mapped_column(sa.Integer, nullable=False, default=0)
    finished_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(
        sa.DateTime(timezone=True), nullable=True
    )

    __table_args__ = (
        sa.CheckConstraint(
            "state IN (" + ", ".join(f"'{s}'" for s in EVENT_STATES) + ")", name="state_known"
        ),
        sa.Index(
            "ix_webhook_events_due",
            "next_attempt_at",
            postgresql_where=sa.text("state = 'pending'"),
        ),
        sa.Index("ix_webhook_events_tenant", "tenant_id", "created_at"),
        # The trim of old delivered and given-up events, at every housekeeping: a range.
        sa.Index("ix_webhook_events_finished_at", "finished_at"),
    )


class WebhookAttempt(Base):
    """One try at delivering an event: what the receiver answered, or why nothing was sent."""

    __tablename__ = "webhook_attempts"

    id: orm.Mapped[int] = orm.mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    event_id: orm.Mapped[uuid.UUID] = orm.mapped_column(
        postgresql.UUID(as_uuid=True),
        sa.ForeignKey("webhook_events.id", ondelete="CASCADE"),
        nullable=False,
    )
    tenant_id: orm.Mapped[str] = orm.mapped_column(sa.String(255), nullable=False)
    type: orm.Mapped[str] = orm.mapped_column(sa.String(64), nullable=False)
    attempted_at: orm.Mapped[dt.datetime] = orm.mapped_column(
        sa.DateTime(timezone=True), nullable=False
    )
    # The event's attempts so far, this one included.
    attempt: orm.Mapped[int] = orm.mapped_column(sa.Integer, nullable=False)
    status_code: orm.Mapped[int | None] = orm.mapped_column(sa.Integer, nullable=True)
    error: orm.Mapped[str | None] = orm.mapped_column(sa.Text, nullable=True)

    __table_args__ = (
        sa.Index("ix_webhook_attempts_tenant_id", "tenant_id", "id"),
        sa.Index("ix_webhook_attempts_event_id", "event_id"),
    )
