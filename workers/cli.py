"""`scheduled-images worker` and `scheduled-images beat`: the Celery processes."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from common.embedded import resolve_urls
from common.logging import setup_logging
from common.settings_cli import load_settings
from workers.celery_app import QUEUES, configure


def _app():  # type: ignore[no-untyped-def]
    settings = resolve_urls(load_settings(), broker=True)
    setup_logging(settings.log_format, settings.log_level)
    return configure(settings, settings.broker_url), settings


@click.command("worker")
@click.option(
    "--queues",
    default=",".join(QUEUES),
    show_default=True,
    help="Comma-separated queues this pool serves.",
)
@click.option("--concurrency", type=click.IntRange(1, 512), default=2, show_default=True)
@click.option(
    "--pool",
    type=click.Choice(["prefork", "threads", "solo"]),
    default="prefork",
    show_default=True,
)
@click.option("--hostname", default=None, help="Worker name (default: the queues@host).")
def worker(queues: str, concurrency: int, pool: str, hostname: str | None) -> None:
    """A Celery worker pool serving the given queues."""
    wanted = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = sorted(set(wanted) - set(QUEUES))
    if unknown or not wanted:
        raise click.BadParameter(
            f"unknown queue(s) {unknown}; choose from {', '.join(QUEUES)}", param_hint="--queues"
        )
    app, settings = _app()
    # kombu's Redis transport, mended for Redis dying under a worker (workers/broker.py).
    # Beat and Flower keep the stock one: Flower's pages read its redis:// address.
    app.conf.broker_transport = "workers.broker:Transport"
    name = hostname or f"{'+'.join(wanted)}@%h"
    app.worker_main(
        [
            "worker",
            "--queues",
            ",".join(wanted),
            "--concurrency",
            str(concurrency),
            "--pool",
            pool,
            "--hostname",
            name,
            "--loglevel",
            settings.log_level,
            "--without-mingle",
            "--without-gossip",
        ]
    )


@click.command("beat")
@click.option(
    "--schedule-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where beat keeps its state (default: STATE_DIR/celerybeat-schedule).",
)
def beat(schedule_file: Path | None) -> None:
    """Celery beat: sends the tick. Run exactly one (a second is harmless, but useless)."""
    app, settings = _app()
    if schedule_file is None:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        schedule_file = settings.state_dir / "celerybeat-schedule"
    app.start(
        [
            "beat",
            "--schedule",
            str(schedule_file),
            "--loglevel",
            settings.log_level,
            "--pidfile",
            str(Path(tempfile.gettempdir()) / f"si-beat-{id(app)}.pid"),
        ]
    )
