"""The one settings object: every knob of the service, read from environment variables.

`Settings` is the table. Each field is one variable (its name in capitals) with its default,
what it does and how its value is parsed; `from_env` reads them in the order they stand, so a
field's parser may use those above it. `SETTINGS` lists them for `scheduled-images settings`,
which also prints the README's table of them.
"""

from __future__ import annotations

import dataclasses
import os
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import limits


class SettingsError(ValueError):
    """A setting has a value the service cannot use; the message names it."""


#: A setting's parser: its name, its text (the default where unset) and the values parsed
#: above it, to its value; a SettingsError names what is wrong.
Parser = Callable[[str, str, Mapping[str, Any]], Any]


def text(_name: str, raw: str, _earlier: Mapping[str, Any]) -> str:
    return raw


def upper_text(_name: str, raw: str, _earlier: Mapping[str, Any]) -> str:
    return raw.upper()


def absolute_path(_name: str, raw: str, _earlier: Mapping[str, Any]) -> Path:
    return Path(raw).resolve()


def path_or_in_state_dir(file_name: str) -> Parser:
    """A path; where empty, `file_name` in STATE_DIR."""

    def parse(_name: str, raw: str, earlier: Mapping[str, Any]) -> Path:
        return Path(raw) if raw else earlier["state_dir"] / file_name

    return parse


def integer(low: int = 0) -> Parser:
    def parse(name: str, raw: str, _earlier: Mapping[str, Any]) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name} must be an integer, not {raw!r}") from None
        if value < low:
            raise SettingsError(f"{name} must be at least {low}, not {value}")
        return value

    return parse


def number(name: str, raw: str, _earlier: Mapping[str, Any]) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, not {raw!r}") from None
    if value < 0:
        raise SettingsError(f"{name} must not be negative, not {value}")
    return value


def share(name: str, raw: str, earlier: Mapping[str, Any]) -> float:
    value = number(name, raw, earlier)
    if value > 1:
        raise SettingsError(f"{name} must be a share from 0 to 1, not {value}")
    return value


def simulated_speed(name: str, raw: str, earlier: Mapping[str, Any]) -> float:
    """Only the simulated cloud can keep up with a clock that runs faster than the wall's."""
    value = number(name, raw, earlier)
    if value == 0:
        raise SettingsError(f"{name} must be above 0, not {raw!r}")
    if value != 1 and earlier.get("compute_driver") != "simulated":
        raise SettingsError(f"{name} other than 1 needs COMPUTE_DRIVER=simulated, not {value:g}")
    return value


def choice(*choices: str) -> Parser:
    def parse(name: str, raw: str, _earlier: Mapping[str, Any]) -> str:
        value = raw.lower()
        if value not in choices:
            raise SettingsError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
        return value

    return parse


#: Values that deploy examples and tutorials put where a secret goes: a service that started
#: with one would be open to anyone who read the same example.
PLACEHOLDERS = frozenset(
    {"change-me", "changeme", "change_me", "password", "secret", "example", "operator-token"}
)


def is_placeholder(value: str) -> bool:
    return value.strip().lower() in PLACEHOLDERS


def secret_text(name: str, raw: str, _earlier: Mapping[str, Any]) -> str:
    """A secret (a password, or user:password): refused when it is a known placeholder."""
    if raw and (is_placeholder(raw) or is_placeholder(raw.rpartition(":")[2])):
        raise SettingsError(f"{name} has a placeholder ({raw.rpartition(':')[2]!r}): set a secret")
    return raw


def url_with_secret(name: str, raw: str, _earlier: Mapping[str, Any]) -> str:
    """A URL whose password, if it has one, is no known placeholder."""
    password = _url_password(raw)
    if password and is_placeholder(password):
        raise SettingsError(f"{name} has a placeholder password ({password!r}): set a secret")
    return raw


def _url_password(url: str) -> str | None:
    try:
        return urllib.parse.urlsplit(url).password
    except ValueError:
        return None


def rate_limit(name: str, raw: str, _earlier: Mapping[str, Any]) -> str:
    """A rate in the `limits` notation, e.g. `300 per minute`, several joined by `;`."""
    try:
        limits.parse_many(raw)
    except ValueError:
        raise SettingsError(
            f"{name} must be a rate such as '300 per minute', not {raw!r}"
        ) from None
    return raw


def boolean(name: str, raw: str, _earlier: Mapping[str, Any]) -> bool:
    value = raw.strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise SettingsError(f"{name} must be true or false, not {raw!r}")
    return value in ("true", "1", "yes")


def id_list(_name: str, raw: str, _earlier: Mapping[str, Any]) -> tuple[str, ...]:
    """Comma-separated ids, blanks dropped."""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


@dataclasses.dataclass(frozen=True)
class Setting:
    """One row of the table: the variable, its default, what it does, how it is read."""

    name: str
    default: str
    help: str
    parse: Parser
    #: Printed as *** by `scheduled-images settings`.
    secret: bool

    def shown(self, value: object) -> str:
        """The value as it may be printed: secrets and the passwords in URLs as ***."""
        text = ",".join(value) if isinstance(value, tuple) else str(value)
        if self.secret and text:
            return "***"
        password = _url_password(text) if "://" in text else None
        if password:
            return text.replace(f":{password}@", ":***@", 1)
        return text


def setting(default: str, help: str, parse: Parser = text, secret: bool = False) -> Any:
    """A field of `Settings`: the row of the table it stands for."""
    return dataclasses.field(
        metadata={"default": default, "help": help, "parse": parse, "secret": secret}
    )


@dataclasses.dataclass(frozen=True)
class Settings:
    database_url: str = setting(
        "",
        "PostgreSQL URL (postgresql+psycopg2://...). Empty: an embedded PostgreSQL in STATE_DIR.",
        parse=url_with_secret,
    )
    broker_url: str = setting(
        "",
        "Redis URL of the Celery broker. Empty: an embedded Redis in STATE_DIR.",
        parse=url_with_secret,
    )
    state_dir: Path = setting(
        ".state",
        "Folder for the embedded servers' data and the demo tokens.",
        parse=absolute_path,
    )
    compute_driver: str = setting(
        "simulated",
        "`simulated` (a cloud kept in the database) or `openstack`.",
        parse=choice("simulated", "openstack"),
    )
    sim_seconds_per_gb: float = setting(
        "0.5",
        "Simulated cloud: seconds an image takes per GB of disk.",
        parse=number,
    )
    sim_slow_create_s: float = setting(
        "5",
        "Simulated cloud: seconds the `slow_create` fault holds a create call after the image "
        "exists.",
        parse=number,
    )
    sim_duration_sigma: float = setting(
        "0",
        "Simulated cloud: spread of each image's duration around its disk's (the sigma of a "
        "lognormal factor of mean 1); 0: every image of a server takes the same time.",
        parse=number,
    )
    sim_create_error_rate: float = setting(
        "0", "Simulated cloud: share of image creates answered with a 500.", parse=share
    )
    sim_image_error_rate: float = setting(
        "0", "Simulated cloud: share of images that end in ERROR.", parse=share
    )
    sim_seed: int = setting(
        "0",
        "Simulated cloud: seed of the draws above; one image's draws follow from the seed and "
        "its name, so every process agrees on them.",
        parse=integer(),
    )
    clock_speed: float = setting(
        "1",
        "Simulated seconds per real second of the service's clock (lease, poll, retry and "
        "time-out settings are in its seconds). Other than 1 only with the simulated cloud; "
        "every process of one database must agree.",
        parse=simulated_speed,
    )
    os_auth_url: str = setting("", "openstack driver and keystone auth: Keystone v3 URL.")
    os_username: str = setting("", "openstack driver and keystone auth: service user.")
    os_password: str = setting(
        "",
        "openstack driver and keystone auth: service password.",
        parse=secret_text,
        secret=True,
    )
    os_project_name: str = setting("", "openstack driver and keystone auth: service project.")
    os_user_domain_name: str = setting("Default", "Domain of the service user.")
    os_project_domain_name: str = setting("Default", "Domain of the service project.")
    os_region_name: str = setting("", "Region of the compute and image endpoints.")
    os_interface: str = setting("public", "Endpoint interface: public, internal or admin.")
    compute_timeout_s: float = setting(
        "30",
        "Seconds before a compute API call is given up.",
        parse=number,
    )
    auth_backend: str = setting(
        "static",
        "`static` (tokens file) or `keystone`.",
        parse=choice("static", "keystone"),
    )
    auth_tokens_file: Path = setting(
        "",
        "static auth: JSON file token -> {tenant, roles}. Empty: STATE_DIR/tokens.json.",
        parse=path_or_in_state_dir("tokens.json"),
    )
    auth_cache_s: float = setting(
        "30",
        "keystone auth: seconds a validated token is cached.",
        parse=number,
    )
    admin_project_ids: tuple[str, ...] = setting(
        "",
        "keystone auth: the operator projects' ids, comma-separated. The role admin on one of "
        "them, or on a system-scoped token, makes an operator; on any other project it is a "
        "creator of that project's tenant.",
        parse=id_list,
    )
    tenant_write_limit: str = setting(
        "300 per minute",
        "Writes (POST, PUT, DELETE) one tenant may make, across every API process.",
        parse=rate_limit,
    )
    auth_failure_limit: str = setting(
        "60 per minute",
        "Requests answered 401 one client address may make before it is answered 429.",
        parse=rate_limit,
    )
    inflight_cap: int = setting(
        "50",
        "Most image creations in flight across the cloud (initial value; operators change it at "
        "run time through /admin/v1).",
        parse=integer(low=1),
    )
    tenant_inflight_max: int = setting(
        "0",
        "Most image creations one tenant may have in flight (initial value; operators change "
        "it at run time through /admin/v1). 0: none but the cap; places are shared fairly "
        "either way.",
        parse=integer(),
    )
    default_image_duration_s: int = setting(
        "900",
        "Expected image duration of a server with no history yet.",
        parse=integer(low=1),
    )
    tick_interval_s: float = setting(
        "5", "Real seconds between scheduler ticks, whatever CLOCK_SPEED.", parse=number
    )
    retry_attempts: int = setting(
        "3",
        "Attempts at an image before its run fails.",
        parse=integer(low=1),
    )
    retry_delay_s: int = setting(
        "3600",
        "Seconds before the second attempt at a failed image; each later attempt waits that much "
        "longer again.",
        parse=integer(),
    )
    lease_s: float = setting(
        "60",
        "Seconds a run being created may go unseen before its task is published again (bounds how"
        " long a killed worker holds a place).",
        parse=number,
    )
    poll_interval_s: float = setting(
        "15",
        "Seconds between checks of an image in progress.",
        parse=number,
    )
    busy_retry_s: float = setting(
        "300",
        "Seconds a run waits when its server is busy with another image.",
        parse=number,
    )
    run_timeout_s: int = setting(
        "21600",
        "Seconds after which a run still in flight times out.",
        parse=integer(low=1),
    )
    run_history_days: int = setting(
        "30",
        "Days that finished runs and rebalance jobs are kept.",
        parse=integer(low=1),
    )
    server_gone_grace_s: int = setting(
        "604800",
        "Seconds a schedule of a vanished server is kept.",
        parse=integer(),
    )
    webhook_allow_private: bool = setting(
        "false",
        "Let webhooks reach loopback and private (RFC 1918, unique-local) addresses, for a "
        "private cloud. Link-local and metadata addresses are refused always.",
        parse=boolean,
    )
    webhook_timeout_s: float = setting(
        "5",
        "Seconds a webhook receiver has to connect and answer before the attempt fails.",
        parse=number,
    )
    webhook_retry_delay_s: float = setting(
        "30",
        "Seconds before the first retry of an event not delivered; each later retry waits twice "
        "as long, up to WEBHOOK_RETRY_MAX_DELAY_S.",
        parse=number,
    )
    webhook_retry_max_delay_s: float = setting(
        "3600",
        "Longest wait between two attempts at a webhook event.",
        parse=number,
    )
    webhook_give_up_s: float = setting(
        "86400",
        "Seconds after an event that its last attempt is made; then it is given up.",
        parse=number,
    )
    log_format: str = setting(
        "json",
        "`json` (one object a line) or `text`.",
        parse=choice("json", "text"),
    )
    log_level: str = setting("INFO", "Python log level.", parse=upper_text)
    api_workers: int = setting(
        "2",
        "gunicorn worker processes of the API: about one per core.",
        parse=integer(low=1),
    )
    api_threads: int = setting(
        "2",
        "Threads per API worker. Few: a request whose database answer is in waits for the GIL "
        "behind every other running thread. Raise it if a slow compute API holds threads.",
        parse=integer(low=1),
    )
    metrics_port: int = setting(
        "0",
        "Port of a worker's or beat's own Prometheus exporter (/metrics); 0: none.",
        parse=integer(),
    )
    api_metrics_port: int = setting(
        "0",
        "A port of its own for the API's /metrics, which the public port then answers 404; "
        "0: /metrics on the API's port.",
        parse=integer(),
    )
    metrics_cache_s: float = setting(
        "5",
        "Seconds the database-derived gauges of the API's /metrics are cached.",
        parse=number,
    )
    flower_port: int = setting(
        "5555",
        "Port of Flower (`scheduled-images flower`).",
        parse=integer(low=1),
    )
    flower_basic_auth: str = setting(
        "",
        "Flower's basic auth, user:password. Empty: a generated one, kept in STATE_DIR.",
        parse=secret_text,
        secret=True,
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for row in SETTINGS:
            raw = env.get(row.name) or row.default
            values[row.name.lower()] = row.parse(row.name, raw, values)
        return cls(**values)

    def openstack_credentials(self) -> dict[str, str]:
        """The service's own Keystone credentials, for the compute driver and token checks."""
        return {
            "auth_url": self.os_auth_url,
            "username": self.os_username,
            "password": self.os_password,
            "project_name": self.os_project_name,
            "user_domain_name": self.os_user_domain_name,
            "project_domain_name": self.os_project_domain_name,
        }

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)


#: The table, in the order the fields stand.
SETTINGS: tuple[Setting, ...] = tuple(
    Setting(field.name.upper(), **field.metadata) for field in dataclasses.fields(Settings)
)
