"""The one settings object: every knob of the service, read from environment variables."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path


class SettingsError(ValueError):
    """A setting has a value the service cannot use; the message names it."""


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    default: str
    help: str

    @property
    def secret(self) -> bool:
        """Printed as *** by `scheduled-images settings`."""
        return self.name in ("OS_PASSWORD", "FLOWER_BASIC_AUTH")


# The table the README prints; `scheduled-images settings` prints it too.
SETTINGS: tuple[Setting, ...] = (
    Setting(
        "DATABASE_URL",
        "",
        "PostgreSQL URL (postgresql+psycopg2://...). Empty: an embedded PostgreSQL in STATE_DIR.",
    ),
    Setting(
        "BROKER_URL", "", "Redis URL of the Celery broker. Empty: an embedded Redis in STATE_DIR."
    ),
    Setting("STATE_DIR", ".state", "Folder for the embedded servers' data and the demo tokens."),
    Setting(
        "COMPUTE_DRIVER", "simulated", "`simulated` (a cloud kept in the database) or `openstack`."
    ),
    Setting("SIM_SECONDS_PER_GB", "0.5", "Simulated cloud: seconds an image takes per GB of disk."),
    Setting(
        "SIM_SLOW_CREATE_S",
        "5",
        "Simulated cloud: seconds the `slow_create` fault holds "
        "a create call after the image exists.",
    ),
    Setting("OS_AUTH_URL", "", "openstack driver and keystone auth: Keystone v3 URL."),
    Setting("OS_USERNAME", "", "openstack driver and keystone auth: service user."),
    Setting("OS_PASSWORD", "", "openstack driver and keystone auth: service password."),
    Setting("OS_PROJECT_NAME", "", "openstack driver and keystone auth: service project."),
    Setting("OS_USER_DOMAIN_NAME", "Default", "Domain of the service user."),
    Setting("OS_PROJECT_DOMAIN_NAME", "Default", "Domain of the service project."),
    Setting("OS_REGION_NAME", "", "Region of the compute and image endpoints."),
    Setting("OS_INTERFACE", "public", "Endpoint interface: public, internal or admin."),
    Setting("COMPUTE_TIMEOUT_S", "30", "Seconds before a compute API call is given up."),
    Setting("AUTH_BACKEND", "static", "`static` (tokens file) or `keystone`."),
    Setting(
        "AUTH_TOKENS_FILE",
        "",
        "static auth: JSON file token -> {tenant, roles}. Empty: STATE_DIR/tokens.json.",
    ),
    Setting("AUTH_CACHE_S", "30", "keystone auth: seconds a validated token is cached."),
    Setting(
        "INFLIGHT_CAP",
        "50",
        "Most image creations in flight across the cloud (initial "
        "value; operators change it at run time through /admin/v1).",
    ),
    Setting(
        "DEFAULT_IMAGE_DURATION_S",
        "900",
        "Expected image duration of a server with no history yet.",
    ),
    Setting("TICK_INTERVAL_S", "5", "Seconds between scheduler ticks."),
    Setting("RETRY_ATTEMPTS", "3", "Attempts at an image before its run fails."),
    Setting(
        "RETRY_DELAY_S",
        "3600",
        "Seconds before the second attempt at a failed image; "
        "each later attempt waits that much longer again.",
    ),
    Setting(
        "LEASE_S",
        "60",
        "Seconds a run being created may go unseen before its task is "
        "published again (bounds how long a killed worker holds a place).",
    ),
    Setting("POLL_INTERVAL_S", "15", "Seconds between checks of an image in progress."),
    Setting(
        "BUSY_RETRY_S", "300", "Seconds a run waits when its server is busy with another image."
    ),
    Setting("RUN_TIMEOUT_S", "21600", "Seconds after which a run still in flight times out."),
    Setting("RUN_HISTORY_DAYS", "30", "Days that finished runs and rebalance jobs are kept."),
    Setting("SERVER_GONE_GRACE_S", "604800", "Seconds a schedule of a vanished server is kept."),
    Setting("LOG_FORMAT", "json", "`json` (one object a line) or `text`."),
    Setting("LOG_LEVEL", "INFO", "Python log level."),
    Setting("API_WORKERS", "2", "gunicorn worker processes of the API: about one per core."),
    Setting(
        "API_THREADS",
        "2",
        "Threads per API worker. Few: a request whose database answer is in waits for the GIL "
        "behind every other running thread. Raise it if a slow compute API holds threads.",
    ),
    Setting(
        "METRICS_PORT",
        "0",
        "Port of a worker's or beat's own Prometheus exporter (/metrics); 0: none.",
    ),
    Setting(
        "METRICS_CACHE_S",
        "5",
        "Seconds the database-derived gauges of the API's /metrics are cached.",
    ),
    Setting("FLOWER_PORT", "5555", "Port of Flower (`scheduled-images flower`)."),
    Setting(
        "FLOWER_BASIC_AUTH",
        "",
        "Flower's basic auth, user:password. Empty: a generated one, kept in STATE_DIR.",
    ),
)


def _int(env: Mapping[str, str], name: str, low: int = 0) -> int:
    raw = env.get(name) or _default(name)
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, not {raw!r}") from None
    if value < low:
        raise SettingsError(f"{name} must be at least {low}, not {value}")
    return value


def _float(env: Mapping[str, str], name: str) -> float:
    raw = env.get(name) or _default(name)
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, not {raw!r}") from None
    if value < 0:
        raise SettingsError(f"{name} must not be negative, not {value}")
    return value


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    value = (env.get(name) or _default(name)).lower()
    if value not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def _str(env: Mapping[str, str], name: str) -> str:
    return env.get(name) or _default(name)


def _default(name: str) -> str:
    return next(s.default for s in SETTINGS if s.name == name)


@dataclasses.dataclass(frozen=True)
class Settings:
    database_url: str
    broker_url: str
    state_dir: Path
    compute_driver: str
    sim_seconds_per_gb: float
    sim_slow_create_s: float
    os_auth_url: str
    os_username: str
    os_password: str
    os_project_name: str
    os_user_domain_name: str
    os_project_domain_name: str
    os_region_name: str
    os_interface: str
    compute_timeout_s: float
    auth_backend: str
    auth_tokens_file: Path
    auth_cache_s: float
    inflight_cap: int
    default_image_duration_s: int
    tick_interval_s: float
    retry_attempts: int
    retry_delay_s: int
    lease_s: float
    poll_interval_s: float
    busy_retry_s: float
    run_timeout_s: int
    run_history_days: int
    server_gone_grace_s: int
    log_format: str
    log_level: str
    api_workers: int
    api_threads: int
    metrics_port: int
    metrics_cache_s: float
    flower_port: int
    flower_basic_auth: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        state_dir = Path(_str(env, "STATE_DIR")).resolve()
        tokens = env.get("AUTH_TOKENS_FILE") or str(state_dir / "tokens.json")
        return cls(
            database_url=_str(env, "DATABASE_URL"),
            broker_url=_str(env, "BROKER_URL"),
            state_dir=state_dir,
            compute_driver=_choice(env, "COMPUTE_DRIVER", ("simulated", "openstack")),
            sim_seconds_per_gb=_float(env, "SIM_SECONDS_PER_GB"),
            sim_slow_create_s=_float(env, "SIM_SLOW_CREATE_S"),
            os_auth_url=_str(env, "OS_AUTH_URL"),
            os_username=_str(env, "OS_USERNAME"),
            os_password=_str(env, "OS_PASSWORD"),
            os_project_name=_str(env, "OS_PROJECT_NAME"),
            os_user_domain_name=_str(env, "OS_USER_DOMAIN_NAME"),
            os_project_domain_name=_str(env, "OS_PROJECT_DOMAIN_NAME"),
            os_region_name=_str(env, "OS_REGION_NAME"),
            os_interface=_str(env, "OS_INTERFACE"),
            compute_timeout_s=_float(env, "COMPUTE_TIMEOUT_S"),
            auth_backend=_choice(env, "AUTH_BACKEND", ("static", "keystone")),
            auth_tokens_file=Path(tokens),
            auth_cache_s=_float(env, "AUTH_CACHE_S"),
            inflight_cap=_int(env, "INFLIGHT_CAP", low=1),
            default_image_duration_s=_int(env, "DEFAULT_IMAGE_DURATION_S", low=1),
            tick_interval_s=_float(env, "TICK_INTERVAL_S"),
            retry_attempts=_int(env, "RETRY_ATTEMPTS", low=1),
            retry_delay_s=_int(env, "RETRY_DELAY_S"),
            lease_s=_float(env, "LEASE_S"),
            poll_interval_s=_float(env, "POLL_INTERVAL_S"),
            busy_retry_s=_float(env, "BUSY_RETRY_S"),
            run_timeout_s=_int(env, "RUN_TIMEOUT_S", low=1),
            run_history_days=_int(env, "RUN_HISTORY_DAYS", low=1),
            server_gone_grace_s=_int(env, "SERVER_GONE_GRACE_S"),
            log_format=_choice(env, "LOG_FORMAT", ("json", "text")),
            log_level=_str(env, "LOG_LEVEL").upper(),
            api_workers=_int(env, "API_WORKERS", low=1),
            api_threads=_int(env, "API_THREADS", low=1),
            metrics_port=_int(env, "METRICS_PORT"),
            metrics_cache_s=_float(env, "METRICS_CACHE_S"),
            flower_port=_int(env, "FLOWER_PORT", low=1),
            flower_basic_auth=_str(env, "FLOWER_BASIC_AUTH"),
        )

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
