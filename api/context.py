"""What a request reaches through the app: sessions, the cloud, settings and the clock."""

from __future__ import annotations

import datetime as dt

from celery import Celery
from flask import current_app
from sqlalchemy import orm

from common.compute.base import ComputeDriver
from common.destinations import Resolver
from common.settings import Settings
from scheduler.fleet_plan import PlannedLoad


def sessions() -> orm.sessionmaker[orm.Session]:
    return current_app.extensions["sessions"]


def read_sessions() -> orm.sessionmaker[orm.Session]:
    """Autocommit sessions for one-statement reads, used through `common.db.read`."""
    return current_app.extensions["read_sessions"]


def cloud() -> ComputeDriver:
    return current_app.extensions["compute"]


def settings() -> Settings:
    return current_app.extensions["settings"]


def now() -> dt.datetime:
    return current_app.extensions["clock"]()


def resolver() -> Resolver:
    """How this app resolves a webhook's host to the addresses it checks."""
    return current_app.extensions["resolver"]


def planned_load() -> PlannedLoad:
    """This app's picture of the planned load, for placing schedules as they are enabled."""
    return current_app.extensions["planned_load"]


def publisher() -> Celery | None:
    """This app's sender of tasks, or None when the API has no broker configured."""
    return current_app.extensions["publisher"]
