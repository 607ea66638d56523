"""A PostgreSQL of a test's own (embedded, in a temporary folder) that it may stop and start:
stopping the shared server would break everybody else's tests."""

from common.embedded import OwnPostgres

__all__ = ["OwnPostgres"]
