"""What a request reaches through the app: sessions, the cloud, settings and the clock."""

from __future__ import annotations

import datetime as dt

from flask import current_app
from sqlalchemy import orm

from common.compute.base import ComputeDriver
from common.settings import Settings


def sessions() -> orm.sessionmaker[orm.Session]:
    return current_app.extensions["sessions"]


def cloud() -> ComputeDriver:
    return current_app.extensions["compute"]


def settings() -> Settings:
    return current_app.extensions["settings"]


def now() -> dt.datetime:
    return current_app.extensions["clock"]()
