"""Configuration, read once from the environment. Every setting is listed in the README's table."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ("embedded", "endpoint", "localstack", "aws")
# The account moto reports for every caller (moto.core.DEFAULT_ACCOUNT_ID).
EMULATOR_ACCOUNT_ID = "123456789012"


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


@dataclass
class Config:
    backend: str = "embedded"
    store: str = "memory"
    port: int = 8080
    region: str = "us-east-1"
    aws_endpoint: str | None = None
    # Embedded mode: the emulator's loopback port (0 picks a free one); fix it to point workers
    # started outside the service at the emulator.
    emulator_port: int = 0
    account_id: str | None = None
    sfn_role_arn: str = f"arn:aws:iam::{EMULATOR_ACCOUNT_ID}:role/workflow-manager-sfn"
    default_namespace: str = "default"
    max_body_bytes: int = 1024 * 1024
    request_timeout_seconds: float = 5.0
    # The background updater: how often it wakes, and the bounds of each workflow's check interval.
    updater_enabled: bool = True
    updater_tick_seconds: float = 0.5
    updater_min_interval_seconds: float = 1.0
    updater_max_interval_seconds: float = 60.0
    # Embedded mode: activity workers started with the service (activity name -> command).
    workers_file: Path | None = field(default_factory=lambda: PROJECT_ROOT / "data" / "workers.yml")
    start_workers: bool = True
    # The DynamoDB store (WFM_STORE=dynamodb): table name prefix, how long a workflow is kept (DynamoDB
    # TTL), an endpoint of its own (default: the backend's), and whether start-up creates the tables
    # (default: in embedded mode only; elsewhere run `workflow-manager init-tables` or deploy
    # deploy/dynamodb.cloudformation.yml).
    dynamodb_prefix: str = "workflow-manager"
    workflow_retention_days: float = 30.0
    dynamodb_endpoint: str | None = None
    dynamodb_create_tables: bool | None = None
    # The Batch executor (definitions with manager `batch`): on in embedded mode, elsewhere when a
    # default job queue is configured. The workflow queue `default` runs on `batch_default_queue`,
    # others through `batch_custom_queues` (workflow queue -> job queue name or ARN). Job outputs go
    # to the results table. Embedded mode registers the job definitions of the file with the emulator.
    batch_enabled: bool = True
    batch_default_queue: str = "default"
    batch_custom_queues: dict[str, str] = field(default_factory=dict)
    batch_results_table: str | None = None
    batch_job_definitions_file: Path | None = field(
        default_factory=lambda: PROJECT_ROOT / "data" / "batch-job-definitions.yml"
    )

    @classmethod
    def from_env(cls) -> Config:
        env = os.environ
        backend = env.get("WFM_BACKEND", "embedded")
        if backend not in BACKENDS:
            raise ValueError(f"WFM_BACKEND must be one of {', '.join(BACKENDS)}, not {backend!r}")
        workers_file = env.get("WFM_WORKERS_FILE")
        config = cls(
            backend=backend,
            store=env.get("WFM_STORE", "memory"),
            port=int(env.get("WFM_PORT", "8080")),
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            aws_endpoint=env.get("WFM_AWS_ENDPOINT") or env.get("AWS_ENDPOINT_URL") or None,
            emulator_port=int(env.get("WFM_EMULATOR_PORT", "0")),
            account_id=env.get("WFM_AWS_ACCOUNT_ID") or None,
            default_namespace=env.get("WFM_NAMESPACE", "default"),
            max_body_bytes=int(env.get("WFM_MAX_BODY_BYTES", str(1024 * 1024))),
            request_timeout_seconds=float(env.get("WFM_REQUEST_TIMEOUT_SECONDS", "5")),
            updater_enabled=_env_bool("WFM_UPDATER", True),
            start_workers=_env_bool("WFM_START_WORKERS", backend == "embedded"),
            dynamodb_prefix=env.get("WFM_DYNAMODB_PREFIX") or "workflow-manager",
            workflow_retention_days=float(env.get("WFM_WORKFLOW_RETENTION_DAYS") or "30"),
            dynamodb_endpoint=env.get("WFM_DYNAMODB_ENDPOINT") or None,
            dynamodb_create_tables=_env_bool("WFM_DYNAMODB_CREATE_TABLES", backend == "embedded"),
        )
        config.batch_enabled = _env_bool(
            "WFM_BATCH", backend == "embedded" or bool(env.get("WFM_BATCH_DEFAULT_QUEUE"))
        )
        config.batch_default_queue = env.get("WFM_BATCH_DEFAULT_QUEUE") or "default"
        if env.get("WFM_BATCH_CUSTOM_QUEUES"):
            queues = json.loads(env["WFM_BATCH_CUSTOM_QUEUES"])
            if not isinstance(queues, dict) or not all(isinstance(v, str) for v in queues.values()):
                raise ValueError("WFM_BATCH_CUSTOM_QUEUES must be a JSON object of strings")
            config.batch_custom_queues = queues
        config.batch_results_table = env.get("WFM_BATCH_RESULTS_TABLE") or None
        if "WFM_BATCH_JOB_DEFINITIONS_FILE" in env:
            path = env["WFM_BATCH_JOB_DEFINITIONS_FILE"]
            config.batch_job_definitions_file = Path(path) if path else None
        if env.get("WFM_SFN_ROLE_ARN"):
            config.sfn_role_arn = env["WFM_SFN_ROLE_ARN"]
        if workers_file is not None:
            config.workers_file = Path(workers_file) if workers_file else None
        if backend == "endpoint" and not config.aws_endpoint:
            raise ValueError("WFM_BACKEND=endpoint needs WFM_AWS_ENDPOINT or AWS_ENDPOINT_URL")
        return config
