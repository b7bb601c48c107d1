"""Configuration, read once from the environment. Every setting is listed in the README's table.

Each default is stated once, on its field. `Config.from_env()` overrides only the fields whose
variable is set (an empty variable counts as unset, except the two files, where empty means "none");
defaults that depend on another setting (the backend) are `None` on the field and read through a
property (`bind_host`, `starts_workers`, `creates_tables`), so that `Config(...)` built
in code and `Config.from_env()` agree.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ("embedded", "endpoint", "localstack", "aws")
STORES = ("memory", "dynamodb")
# The account moto reports for every caller (moto.core.DEFAULT_ACCOUNT_ID).
EMULATOR_ACCOUNT_ID = "123456789012"
# WFM_AUTH: `off` serves without tokens (the only way to do so outside embedded mode), `on` demands
# a tokens file even in embedded mode. Unset: on exactly when WFM_AUTH_TOKENS_FILE is set.
AUTH_SWITCHES = ("on", "off")
# The hosts an embedded service answers to (at its port): loopback only, so that a web page cannot
# reach it through DNS rebinding (CONTRACT 9.1).
EMBEDDED_HOST_NAMES = ("localhost", "127.0.0.1", "[::1]")
LOOPBACK_BIND_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
LOG_LEVEL_VARIABLE = "WFM_LOG_LEVEL"
DEFAULT_LOG_LEVEL = "INFO"
# WFM_LOG_FORMAT: JSON lines for a log pipeline (the default outside embedded mode), or text for a
# person at a terminal (the default in embedded mode).
LOG_FORMAT_VARIABLE = "WFM_LOG_FORMAT"
LOG_FORMATS = ("json", "text")


def log_level(environ: Mapping[str, str] = os.environ) -> str:
    """The service's log level (`WFM_LOG_LEVEL`), for the command line before any Config exists."""
    return (environ.get(LOG_LEVEL_VARIABLE) or DEFAULT_LOG_LEVEL).upper()


def log_format(environ: Mapping[str, str] = os.environ) -> str:
    """The service's log format (`WFM_LOG_FORMAT`, by default text in embedded mode and json
    elsewhere), for the command line before any Config exists."""
    value = environ.get(LOG_FORMAT_VARIABLE)
    if value:
        return _log_format(value)
    return "text" if (environ.get("WFM_BACKEND") or Config.backend) == "embedded" else "json"


def _log_format(value: str) -> str:
    chosen = value.strip().lower()
    if chosen not in LOG_FORMATS:
        raise ValueError(f"{LOG_FORMAT_VARIABLE} must be one of {', '.join(LOG_FORMATS)}, not {value!r}")
    return chosen


def _bool(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _queue_map(value: str) -> dict[str, str]:
    queues = json.loads(value)
    if not isinstance(queues, dict) or not all(isinstance(v, str) for v in queues.values()):
        raise ValueError("WFM_BATCH_CUSTOM_QUEUES must be a JSON object of strings")
    return queues


def _optional_path(value: str) -> Path | None:
    return Path(value) if value else None


def _comma_list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _origins(value: str) -> tuple[str, ...]:
    return tuple(origin.rstrip("/").lower() for origin in _comma_list(value))


def _auth_switch(value: str) -> str:
    switch = value.strip().lower()
    if switch not in AUTH_SWITCHES:
        raise ValueError(f"WFM_AUTH must be one of {', '.join(AUTH_SWITCHES)}, not {value!r}")
    return switch


def _emulator_quotas(value: str) -> str:
    mode = value.strip().lower()
    if mode not in ("off", "aws"):
        raise ValueError(f"WFM_EMULATOR_QUOTAS must be off or aws, not {value!r}")
    return mode


@dataclass
class Config:
    backend: str = "embedded"
    store: str = "memory"
    # Where the API listens. Default host: loopback in embedded mode, every interface elsewhere.
    host: str | None = None
    port: int = 8080
    # gunicorn worker processes (`WFM_WORKERS`); the embedded emulator and the memory store live in
    # one process, so those modes always serve with one (see `serving_processes`).
    web_workers: int = 2
    log_level: str = DEFAULT_LOG_LEVEL
    # "json" or "text"; None: text in embedded mode, json elsewhere (`logs_format`).
    log_format: str | None = None
    region: str = "us-east-1"
    aws_endpoint: str | None = None
    # Embedded mode: the emulator's loopback port (0 picks a free one); fix it to point workers
    # started outside the service at the emulator.
    emulator_port: int = 0
    # `aws`: the emulator answers ThrottlingException past AWS's API rates (emulator.quotas), as AWS
    # would; `off`: it answers everything.
    emulator_quotas: str = "off"
    account_id: str | None = None
    sfn_role_arn: str = f"arn:aws:iam::{EMULATOR_ACCOUNT_ID}:role/workflow-manager-sfn"
    default_namespace: str = "default"
    max_body_bytes: int = 1024 * 1024
    request_timeout_seconds: float = 5.0
    # A start request waits this long for its start (services.starts.START_WAIT_SECONDS, within
    # the request timeout) before answering `queued` and finishing it in the background; a start
    # whose replica died is taken over once its claim (renewed while it works) is this old.
    start_wait_seconds: float = 3.0
    start_lease_seconds: float = 60.0
    # AWS events (EventBridge -> SQS, deploy/) as the fast path to the store: the queue's URL. In
    # embedded mode the emulator emits the events and the queue is created in it (`events_queue_url`
    # None); elsewhere events are read only when a URL is set. `events_enabled=False` turns them off.
    events_queue_url: str | None = None
    events_enabled: bool = True
    # The background updater: how often it wakes, and the bounds of each workflow's check interval.
    updater_enabled: bool = True
    updater_tick_seconds: float = 0.5
    updater_min_interval_seconds: float = 1.0
    updater_max_interval_seconds: float = 60.0
    # Embedded mode: activity workers started with the service (activity name -> command). Started
    # by default in embedded mode only.
    workers_file: Path | None = field(default_factory=lambda: PROJECT_ROOT / "data" / "workers.yml")
    start_workers: bool | None = None
    # HeartbeatSeconds given to activity Task states that set no bound of their own, so that a dead
    # worker frees its task in minutes (executor.sfn_naming.DEFAULT_ACTIVITY_HEARTBEAT_SECONDS); 0: none.
    activity_heartbeat_seconds: int = 300
    # The DynamoDB store (WFM_STORE=dynamodb): table name prefix, how long a workflow is kept (DynamoDB
    # TTL), an endpoint of its own (default: the backend's), and whether start-up creates the tables
    # (default: in embedded mode only; elsewhere run `workflow-manager init-tables` or deploy
    # deploy/dynamodb.cloudformation.yml).
    dynamodb_prefix: str = "workflow-manager"
    workflow_retention_days: float = 30.0
    dynamodb_endpoint: str | None = None
    dynamodb_create_tables: bool | None = None
    # The Batch executor (definitions with manager `batch`). From the environment: on in embedded
    # mode, elsewhere when a default job queue is configured (only from_env knows whether it was). The workflow queue `default` runs on `batch_default_queue`,
    # others through `batch_custom_queues` (workflow queue -> job queue name or ARN). Job outputs go
    # to the results table. Embedded mode registers the job definitions of the file with the emulator.
    batch_enabled: bool = True
    batch_default_queue: str = "default"
    batch_custom_queues: dict[str, str] = field(default_factory=dict)
    batch_results_table: str | None = None
    batch_job_definitions_file: Path | None = field(
        default_factory=lambda: PROJECT_ROOT / "data" / "batch-job-definitions.yml"
    )

    # Who may do what (CONTRACT 9.1; README "Security"). `auth`: "on", "off" or None (on when a
    # tokens file is set). Browsers: state-changing requests from another origin than the service's
    # own or `allowed_origins` are refused, and so is a Host outside `allowed_hosts` (None: loopback
    # at `port` in embedded mode, any elsewhere). Task resources beyond the contract's list need
    # their ARN prefix in `allowed_integrations`.
    auth: str | None = None
    auth_tokens_file: Path | None = None
    allowed_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] | None = None
    allowed_integrations: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"WFM_BACKEND must be one of {', '.join(BACKENDS)}, not {self.backend!r}")

    # Defaults that depend on the backend are read through these, at use, so that a Config changed
    # after it was built (tests do) still agrees with itself.

    @property
    def embedded(self) -> bool:
        return self.backend == "embedded"

    @property
    def logs_format(self) -> str:
        """`log_format`, by default text in embedded mode and JSON lines elsewhere."""
        if self.log_format is not None:
            return _log_format(self.log_format)
        return "text" if self.embedded else "json"

    @property
    def bind_host(self) -> str:
        """`host`, by default loopback in embedded mode and every interface elsewhere."""
        if self.host is not None:
            return self.host
        return "127.0.0.1" if self.embedded else "0.0.0.0"

    @property
    def starts_workers(self) -> bool:
        """`start_workers`, by default in embedded mode only."""
        return self.embedded if self.start_workers is None else self.start_workers

    @property
    def creates_tables(self) -> bool:
        """`dynamodb_create_tables`, by default in embedded mode only."""
        return self.embedded if self.dynamodb_create_tables is None else self.dynamodb_create_tables

    @property
    def auth_enabled(self) -> bool:
        """Whether requests need a bearer token: a tokens file is set and WFM_AUTH is not `off`."""
        return self.auth != "off" and self.auth_tokens_file is not None

    @property
    def host_allow_list(self) -> tuple[str, ...] | None:
        """The `Host` header values the service answers to (`host` or `host:port`, lower case); None
        for any. Default: the loopback names at `port` in embedded mode, any elsewhere."""
        if self.allowed_hosts is not None:
            return tuple(host.lower() for host in self.allowed_hosts)
        if self.embedded:
            return tuple(f"{name}:{self.port}" for name in EMBEDDED_HOST_NAMES)
        return None

    def startup_refusal(self) -> str | None:
        """Why the service must not serve with this configuration, in one line, or None. Deny by
        default: outside embedded mode, and in embedded mode on a non-loopback address, serving
        without tokens takes an explicit WFM_AUTH=off."""
        if self.auth == "off":
            if self.auth_tokens_file is not None:
                return (
                    "refusing to start: WFM_AUTH=off and WFM_AUTH_TOKENS_FILE are both set; unset one"
                    " of them to say whether requests need a token"
                )
            return None
        if self.auth_tokens_file is not None:
            return None
        how = (
            "set WFM_AUTH_TOKENS_FILE to a tokens file (`workflow-manager token create NAME --role"
            " ROLE` makes entries) or WFM_AUTH=off to serve without authentication"
        )
        if self.auth == "on":
            return f"refusing to start: WFM_AUTH=on but no tokens file; {how}"
        if not self.embedded:
            return f"refusing to start: WFM_BACKEND={self.backend} would serve without authentication; {how}"
        if self.bind_host not in LOOPBACK_BIND_HOSTS:
            return (
                f"refusing to start: the embedded service would listen on {self.bind_host} without"
                f" authentication; listen on 127.0.0.1, or {how}"
            )
        return None

    @property
    def serving_processes(self) -> int:
        """How many processes serve the API: one when the emulator or the memory store lives in the
        process (a second process would have state of its own), `web_workers` otherwise."""
        if self.backend == "embedded" or self.store == "memory":
            return 1
        return self.web_workers

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Config:
        overrides: dict[str, Any] = {}
        for name, variables, parse in _ENVIRONMENT:
            value = next((environ[v] for v in variables if environ.get(v)), None)
            if value is None and name in _EMPTY_MEANS_NONE and variables[0] in environ:
                value = ""
            if value is not None:
                overrides[name] = parse(value)
        if "batch_enabled" not in overrides:
            embedded = overrides.get("backend", cls.backend) == "embedded"
            overrides["batch_enabled"] = embedded or "batch_default_queue" in overrides
        config = cls(**overrides)
        if config.backend == "endpoint" and not config.aws_endpoint:
            raise ValueError("WFM_BACKEND=endpoint needs WFM_AWS_ENDPOINT or AWS_ENDPOINT_URL")
        return config


# field name, the variables that set it (first set one wins), how its text is read.
_ENVIRONMENT: list[tuple[str, tuple[str, ...], Callable[[str], Any]]] = [
    ("backend", ("WFM_BACKEND",), str),
    ("store", ("WFM_STORE",), str),
    ("host", ("WFM_HOST",), str),
    ("port", ("WFM_PORT",), int),
    ("web_workers", ("WFM_WORKERS",), int),
    ("log_level", (LOG_LEVEL_VARIABLE,), str.upper),
    ("log_format", (LOG_FORMAT_VARIABLE,), _log_format),
    ("region", ("AWS_REGION", "AWS_DEFAULT_REGION"), str),
    ("aws_endpoint", ("WFM_AWS_ENDPOINT", "AWS_ENDPOINT_URL"), str),
    ("emulator_port", ("WFM_EMULATOR_PORT",), int),
    ("emulator_quotas", ("WFM_EMULATOR_QUOTAS",), _emulator_quotas),
    ("account_id", ("WFM_AWS_ACCOUNT_ID",), str),
    ("sfn_role_arn", ("WFM_SFN_ROLE_ARN",), str),
    ("default_namespace", ("WFM_NAMESPACE",), str),
    ("max_body_bytes", ("WFM_MAX_BODY_BYTES",), int),
    ("request_timeout_seconds", ("WFM_REQUEST_TIMEOUT_SECONDS",), float),
    ("start_wait_seconds", ("WFM_START_WAIT_SECONDS",), float),
    ("start_lease_seconds", ("WFM_START_LEASE_SECONDS",), float),
    ("events_queue_url", ("WFM_EVENTS_QUEUE_URL",), str),
    ("events_enabled", ("WFM_EVENTS",), _bool),
    ("updater_enabled", ("WFM_UPDATER",), _bool),
    ("workers_file", ("WFM_WORKERS_FILE",), _optional_path),
    ("start_workers", ("WFM_START_WORKERS",), _bool),
    ("activity_heartbeat_seconds", ("WFM_ACTIVITY_HEARTBEAT_SECONDS",), int),
    ("dynamodb_prefix", ("WFM_DYNAMODB_PREFIX",), str),
    ("workflow_retention_days", ("WFM_WORKFLOW_RETENTION_DAYS",), float),
    ("dynamodb_endpoint", ("WFM_DYNAMODB_ENDPOINT",), str),
    ("dynamodb_create_tables", ("WFM_DYNAMODB_CREATE_TABLES",), _bool),
    ("batch_enabled", ("WFM_BATCH",), _bool),
    ("batch_default_queue", ("WFM_BATCH_DEFAULT_QUEUE",), str),
    ("batch_custom_queues", ("WFM_BATCH_CUSTOM_QUEUES",), _queue_map),
    ("batch_results_table", ("WFM_BATCH_RESULTS_TABLE",), str),
    ("batch_job_definitions_file", ("WFM_BATCH_JOB_DEFINITIONS_FILE",), _optional_path),
    ("auth", ("WFM_AUTH",), _auth_switch),
    ("auth_tokens_file", ("WFM_AUTH_TOKENS_FILE",), _optional_path),
    ("allowed_origins", ("WFM_ALLOWED_ORIGINS",), _origins),
    ("allowed_hosts", ("WFM_ALLOWED_HOSTS",), _comma_list),
    ("allowed_integrations", ("WFM_ALLOWED_INTEGRATIONS",), _comma_list),
]
# Set but empty, these mean "no file" rather than "the default file".
_EMPTY_MEANS_NONE = frozenset({"workers_file", "batch_job_definitions_file", "auth_tokens_file"})
