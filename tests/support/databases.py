"""Databases of a test run's or a benchmark's own: created on a PostgreSQL server, migrated to
head, dropped at the end, so that runs never see each other's data."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from common import migrate
from common.embedded import create_database

LOCAL_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


def answers(url: str) -> bool:
    """True when a PostgreSQL server answers at the URL within two seconds."""
    engine = sa.create_engine(url, connect_args={"connect_timeout": 2})
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        return True
    except sa.exc.OperationalError:
        return False
    finally:
        engine.dispose()


def create(admin_url: str, prefix: str) -> str:
    """A new, empty database named `<prefix>_<random>` on the admin URL's server."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    create_database(admin_url, name)
    return sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def copy(admin_url: str, template: str, prefix: str) -> str:
    """A new database `<prefix>_<random>`, a copy of the database `template`: far quicker than
    migrating one, for runs that make a database each (mutation testing)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    finally:
        engine.dispose()
    return sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def create_migrated(admin_url: str, prefix: str) -> str:
    """A new database as `create` makes it, migrated to head."""
    url = create(admin_url, prefix)
    migrate.upgrade(url)
    return url


def drop(admin_url: str, url: str) -> None:
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            name = sa.make_url(url).database
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()
