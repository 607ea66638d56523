"""A run's states and which state may follow which: the vocabulary of `common.runs`.

A module of its own, below the models, because the `runs` table checks its stored values
against this enum while `common.runs` builds its statements on that table. Import from
`common.runs`, which holds the life of a run and re-exports these names.
"""

from __future__ import annotations

from enum import StrEnum


class RunState(StrEnum):
    """Where a run is. The values are what the `runs.state` column stores and the API shows."""

    #: Waiting for a place under the cap (first time, or after a failed attempt or busy server).
    PENDING = "pending"
    #: Holds a place; its create message is published.
    ADMITTED = "admitted"
    #: A worker is asking the cloud for the image.
    CREATING = "creating"
    #: The cloud is making the image; polls follow it.
    SAVING = "saving"
    #: The image is ACTIVE.
    DONE = "done"
    #: Every attempt failed.
    FAILED = "failed"
    #: Still in flight past its deadline.
    TIMED_OUT = "timed_out"
    #: Never started within its period.
    SKIPPED = "skipped"
    #: Its schedule was disabled, or its server is gone.
    CANCELLED = "cancelled"


#: States that hold a place under the cap; at most one run of a server is in one of them.
IN_FLIGHT = frozenset({RunState.ADMITTED, RunState.CREATING, RunState.SAVING})
#: States a run never leaves.
FINAL = frozenset(
    {RunState.DONE, RunState.FAILED, RunState.TIMED_OUT, RunState.SKIPPED, RunState.CANCELLED}
)
#: States of a run that has not ended: waiting or in flight.
OPEN = frozenset({RunState.PENDING}) | IN_FLIGHT
#: Every stored value, in the order of the enum (the API lists them so).
RUN_STATES = tuple(state.value for state in RunState)

#: Which states a run may move to from each state; a final state goes nowhere. A failed
#: attempt or a busy server sends a run in flight back to PENDING.
TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.PENDING: frozenset({RunState.ADMITTED, RunState.SKIPPED, RunState.CANCELLED}),
    RunState.ADMITTED: frozenset({RunState.CREATING, RunState.TIMED_OUT}),
    RunState.CREATING: frozenset(
        {
            RunState.SAVING,
            RunState.PENDING,
            RunState.FAILED,
            RunState.CANCELLED,
            RunState.TIMED_OUT,
        }
    ),
    RunState.SAVING: frozenset(
        {RunState.DONE, RunState.PENDING, RunState.FAILED, RunState.TIMED_OUT}
    ),
    **{state: frozenset() for state in FINAL},
}


def sources(target: RunState) -> tuple[RunState, ...]:
    """The states a run may move to `target` from, in the order of the enum."""
    return tuple(state for state in RunState if target in TRANSITIONS[state])


def in_order(states: frozenset[RunState]) -> tuple[RunState, ...]:
    """A set of states as a tuple in the order of the enum, for a stable `IN (...)` list."""
    return tuple(state for state in RunState if state in states)


class Reason(StrEnum):
    """Why a run ended without an image, or why it waits again: the `runs.reason` column.

    Metrics label failed runs by it; the values are those labels.
    """

    #: The cloud refused or failed the create call.
    CREATE_ERROR = "create_error"
    #: The image ended in ERROR.
    IMAGE_ERROR = "image_error"
    #: The image was gone when polled.
    IMAGE_MISSING = "image_missing"
    #: In flight past the run's deadline.
    TIMED_OUT = "timeout"
    #: The server no longer exists.
    SERVER_GONE = "server_gone"
    #: The schedule was disabled while the run waited.
    SCHEDULE_DISABLED = "cancelled"
    #: The schedule was paused while its scheduled run waited.
    SCHEDULE_PAUSED = "paused"
    #: The server had another image in progress.
    SERVER_BUSY = "busy"
    #: Not admitted before its start-by time.
    MISSED_WINDOW = "missed_window"
