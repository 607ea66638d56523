"""`scheduled-images api` serves the API with gunicorn; `token add` writes a static token."""

from __future__ import annotations

import gc
import secrets

import click
from gunicorn.app.base import BaseApplication

from api.auth import ROLES, add_token
from common.embedded import resolve_urls
from common.logging import setup_logging
from common.metrics import mark_process_dead, use_multiprocess_values
from common.settings import Settings
from common.settings_cli import load_settings


class GunicornApp(BaseApplication):
    """gunicorn run in-process; each worker builds its own app (and its own connections)."""

    def __init__(self, settings: Settings, options: dict) -> None:
        self._settings = settings
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self):  # type: ignore[no-untyped-def]
        from api import create_app

        setup_logging(self._settings.log_format, self._settings.log_level)
        app = create_app(self._settings)
        # What was built to serve (modules, the app, its schemas) lives as long as the worker:
        # out of the collector's sight, a full collection in a request is that much shorter.
        gc.freeze()
        return app


def serve(settings: Settings, host: str, port: int) -> None:
    # The workers count requests in files any of them can sum: a scrape reaches one worker,
    # and would otherwise see that worker's counts alone.
    use_multiprocess_values()
    binds = [f"{host}:{port}"]
    if settings.api_metrics_port:
        binds.append(f"{host}:{settings.api_metrics_port}")
    GunicornApp(
        settings,
        {
            "bind": binds,
            "workers": settings.api_workers,
            "threads": settings.api_threads,
            "worker_class": "gthread",
            "timeout": 60,
            "graceful_timeout": 10,
            "keepalive": 5,
            "accesslog": None,
            "child_exit": lambda _arbiter, worker: mark_process_dead(worker.pid),
        },
    ).run()


@click.command("api")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
def api_command(host: str, port: int) -> None:
    """Serve the REST API."""
    settings = resolve_urls(load_settings())
    setup_logging(settings.log_format, settings.log_level)
    serve(settings, host, port)


@click.group()
def token() -> None:
    """Tokens of the static authentication backend."""


@token.command("add")
@click.option("--tenant", required=True)
@click.option(
    "--role",
    "roles",
    multiple=True,
    type=click.Choice(sorted(ROLES)),
    default=("creator",),
    show_default=True,
)
@click.option("--token", "value", default=None, help="The token; a random one if absent.")
def add(tenant: str, roles: tuple[str, ...], value: str | None) -> None:
    """Add a token to AUTH_TOKENS_FILE and print it."""
    value = value or secrets.token_urlsafe(24)
    add_token(load_settings().auth_tokens_file, value, tenant, list(roles))
    click.echo(value)
