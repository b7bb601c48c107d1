"""Wiring: which implementation serves which port. `build_runtime(config)` builds the AWS clients,
the store, the executors, the domain services, the background updater and (in embedded mode) the
emulator and activity workers, and hands the services to the handlers. Nothing else constructs an
adapter.

AWS clients for each backend the service can run on (`WFM_BACKEND`):
- `embedded`: the in-process emulator (`workflow_manager.emulator`); clients point at its endpoint
  with dummy credentials.
- `endpoint`: any AWS-compatible endpoint, such as a moto server: `WFM_AWS_ENDPOINT` or the standard
  `AWS_ENDPOINT_URL`.
- `localstack`: localstack-client's session, which finds LocalStack through `LOCALSTACK_HOST`.
- `aws`: real AWS through the standard credential chain.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import boto3
from botocore.config import Config as BotoConfig

from executor.aws_events import SQS_MAX_WAIT_SECONDS, SqsEventSource, ensure_event_routing
from executor.batch import BatchExecutor
from executor.batch_results import BatchResultsTable, results_table_name
from executor.call_budget import CallBudgets, ReplicaCount
from executor.routing import ExecutorRouter
from executor.sfn import StepFunctionsExecutor
from store.interface import Store
from store.memory import MemoryStore
from workflow_manager.api.handlers import Handlers
from workflow_manager.config import EMULATOR_ACCOUNT_ID, Config
from workflow_manager.domain.aws import AWS_CALL_BUDGETS_PER_SECOND
from workflow_manager.domain.errors import NotFound
from workflow_manager.domain.integrations import IntegrationPolicy
from workflow_manager.domain.models import Manager, StateResource
from workflow_manager.emulator import DUMMY_CREDENTIALS
from workflow_manager.services.definitions import DefinitionService
from workflow_manager.services.events import EventConsumer
from workflow_manager.services.state_resources import StateResourceService
from workflow_manager.services.updater import SWEEP_MIN_INTERVAL_SECONDS, BackgroundUpdater, SweepLease
from workflow_manager.services.workflows import WorkflowService
from workflow_manager.telemetry.aws import count_calls
from workflow_manager.telemetry.metrics import MetricsExporter, PrometheusWorkflowObserver

log = logging.getLogger(__name__)

# botocore retries throttling and transient errors with backoff; the ports
# turn what is left into BackendUnavailable (503).
# The pool is shared by the API, the updater and the embedded workers' pollers, and the read
# timeout outlasts GetActivityTask's 60-second long poll.
RETRY_CONFIG = BotoConfig(
    # `adaptive`: standard retries, plus a client-side rate that slows down after a throttle.
    retries={"mode": "adaptive", "max_attempts": 5},
    connect_timeout=5,
    read_timeout=70,
    max_pool_connections=50,
)

# SubmitJob takes no idempotency token: botocore's retry of a call whose answer was lost would
# submit the job twice. The Batch executor retries SubmitJob itself, looking for the job before
# each retry (executor.batch.BatchExecutor._submit); the short read timeout keeps one call well
# inside a start claim's lease.
SUBMIT_JOB_CONFIG = BotoConfig(
    retries={"mode": "standard", "total_max_attempts": 1},
    connect_timeout=5,
    read_timeout=15,
    max_pool_connections=50,
)


@dataclass
class AwsClients:
    """Builds boto3 clients for one backend. `client("stepfunctions")`."""

    backend: str
    region: str
    endpoint_url: str | None = None
    _session: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.backend == "localstack":
            import localstack_client.session

            self._session = localstack_client.session.Session(region_name=self.region)
        else:
            self._session = boto3.session.Session(region_name=self.region)

    def client(self, service: str, **overrides: Any):
        """A client whose calls are counted in the service's metrics (telemetry.aws)."""
        kwargs: dict[str, Any] = {"config": RETRY_CONFIG, **overrides}
        if self.backend in ("embedded", "endpoint"):
            kwargs.setdefault("endpoint_url", self.endpoint_url)
            # An emulator takes any credentials; a configured chain is kept for a real endpoint.
            if self.backend == "embedded" or self._session.get_credentials() is None:
                kwargs.update(DUMMY_CREDENTIALS)
        return count_calls(self._session.client(service, **kwargs), service)


@dataclass
class Runtime:
    """What a running service owns, so that shutdown can stop it in order."""

    config: Config
    store: Store
    workflows: WorkflowService
    clients: AwsClients
    updater: BackgroundUpdater | None = None
    events: EventConsumer | None = None
    replicas: ReplicaCount | None = None
    emulator: Any = None
    workers: Any = None
    _stopped: bool = field(default=False, repr=False)

    def start_background(self) -> None:
        if self.replicas is not None:
            self.replicas.start()
        if self.updater is not None:
            self.updater.start()
        if self.events is not None:
            self.events.start()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.events is not None:
            self.events.stop(timeout=1.0)  # a daemon thread, perhaps in a long poll
        if self.updater is not None:
            self.updater.stop()
        if self.workers is not None:
            self.workers.stop()
        if self.replicas is not None:
            self.replicas.stop()
        if self.emulator is not None:
            self.emulator.stop()


def build_runtime(config: Config) -> tuple[Runtime, Handlers]:
    emulator = None
    endpoint = config.aws_endpoint
    if config.backend == "embedded":
        from workflow_manager.emulator.server import start_embedded_emulator

        emulator = start_embedded_emulator(port=config.emulator_port, quotas=config.emulator_quotas)
        endpoint = emulator.endpoint_url
        log.info("embedded AWS emulator listening on %s", endpoint)
    clients = AwsClients(config.backend, config.region, endpoint)

    store = _build_store(config, clients)

    def lookup_state_resource(namespace: str, name: str) -> StateResource | None:
        try:
            return store.get_state_resource(namespace, name)
        except NotFound:
            return None

    # The live replicas share the AWS call budgets: each holds its calls to its share.
    replicas = ReplicaCount(store)
    budgets = CallBudgets(AWS_CALL_BUDGETS_PER_SECOND, replicas)
    sfn_client = budgets.attach(clients.client("stepfunctions"))
    sfn = StepFunctionsExecutor(
        sfn_client,
        region=config.region,
        account_id=_account_id_source(config, clients),
        role_arn=config.sfn_role_arn,
        lookup_state_resource=lookup_state_resource,
        activity_heartbeat_seconds=config.activity_heartbeat_seconds,
    )
    executors: dict[Manager, Any] = {Manager.STEP_FUNCTIONS: sfn}
    if config.batch_enabled:
        executors[Manager.BATCH] = _build_batch_executor(config, clients, lookup_state_resource)
    executor = ExecutorRouter(executors)
    workflows = WorkflowService(
        store,
        executor,
        config.default_namespace,
        start_lease=timedelta(seconds=config.start_lease_seconds),
        start_wait_seconds=min(config.start_wait_seconds, config.request_timeout_seconds),
        observer=PrometheusWorkflowObserver(),
    )

    def check_health() -> None:
        store.check_health()
        executor.check_health()

    integrations = IntegrationPolicy(config.allowed_integrations)
    handlers = Handlers(
        DefinitionService(store, executor, integrations),
        workflows,
        StateResourceService(store, integrations),
        check_health,
        MetricsExporter(workflows.count_active_by_status).render,
    )
    runtime = Runtime(config=config, store=store, workflows=workflows, clients=clients, replicas=replicas)
    runtime.emulator = emulator
    runtime.events = _build_event_consumer(config, clients, workflows)
    if config.updater_enabled:
        sweeping = runtime.events is not None
        runtime.updater = BackgroundUpdater(
            workflows,
            # With events as the fast path the updater is the repair sweep: one at a time, and
            # less often.
            lease=SweepLease(store) if sweeping else None,
            tick_seconds=config.updater_tick_seconds,
            min_interval_seconds=(
                max(config.updater_min_interval_seconds, SWEEP_MIN_INTERVAL_SECONDS)
                if sweeping
                else config.updater_min_interval_seconds
            ),
            max_interval_seconds=(
                max(config.updater_max_interval_seconds, SWEEP_MIN_INTERVAL_SECONDS)
                if sweeping
                else config.updater_max_interval_seconds
            ),
        )
    if config.starts_workers and config.workers_file is not None and config.workers_file.exists():
        from executor.activity_worker.pool import start_workers_from_file

        runtime.workers = start_workers_from_file(
            sfn_client, config.workers_file, config.default_namespace, threading.Event()
        )
    return runtime, handlers


# How long one ReceiveMessage of the events queue waits: SQS's longest poll against AWS; shorter
# against the embedded emulator, whose service stops (and whose tests end) without waiting it out.
EVENTS_WAIT_SECONDS = {"embedded": 2}


def _build_event_consumer(
    config: Config, clients: AwsClients, workflows: WorkflowService
) -> EventConsumer | None:
    if not config.events_enabled:
        return None
    queue_url = config.events_queue_url
    sqs = clients.client("sqs")
    if queue_url is None and config.backend == "embedded":
        queue_url = ensure_event_routing(clients.client("events"), sqs, config.dynamodb_prefix)
    if queue_url is None:
        return None
    return EventConsumer(
        workflows,
        SqsEventSource(sqs, queue_url),
        wait_seconds=EVENTS_WAIT_SECONDS.get(config.backend, SQS_MAX_WAIT_SECONDS),
    )


def _build_store(config: Config, clients: AwsClients) -> Store:
    if config.store == "memory":
        return MemoryStore()
    if config.store == "dynamodb":
        store = build_dynamodb_store(config, clients)
        if config.creates_tables:
            created = store.create_tables()
            if created:
                log.info("created DynamoDB tables: %s", ", ".join(created))
        return store
    raise ValueError(f"WFM_STORE must be 'memory' or 'dynamodb', not {config.store!r}")


def build_dynamodb_store(config: Config, clients: AwsClients):
    """The DynamoDB store on the backend's endpoint (the embedded emulator's in embedded mode), or on
    WFM_DYNAMODB_ENDPOINT when set."""
    from datetime import timedelta

    from store.dynamodb import DynamoDbStore

    endpoint = config.dynamodb_endpoint
    if endpoint is None and config.backend in ("embedded", "endpoint"):
        endpoint = clients.endpoint_url
    if endpoint is None and config.backend == "localstack":
        import localstack_client.config

        endpoint = localstack_client.config.get_service_endpoint("dynamodb")
    credentials = None
    if config.backend != "aws":
        credentials = (DUMMY_CREDENTIALS["aws_access_key_id"], DUMMY_CREDENTIALS["aws_secret_access_key"])
    store = DynamoDbStore(
        config.dynamodb_prefix,
        region=config.region,
        endpoint_url=endpoint,
        credentials=credentials,
        retention=timedelta(days=config.workflow_retention_days),
    )
    count_calls(store.aws_client, "dynamodb")
    return store


def _build_batch_executor(
    config: Config,
    clients: AwsClients,
    lookup_state_resource: Callable[[str, str], StateResource | None],
) -> BatchExecutor:
    results = BatchResultsTable(
        clients.client("dynamodb"),
        config.batch_results_table or results_table_name(config.dynamodb_prefix),
    )
    batch_client = clients.client("batch")
    if config.backend == "embedded":
        from workflow_manager.emulator.seeding import seed_embedded_batch

        seed_embedded_batch(
            batch_client,
            clients.client("iam"),
            results,
            config.batch_job_definitions_file,
            queue_name=config.batch_default_queue,
        )
    return BatchExecutor(
        batch_client,
        results,
        submit_client=clients.client("batch", config=SUBMIT_JOB_CONFIG),
        default_queue=config.batch_default_queue,
        custom_queues=config.batch_custom_queues,
        lookup_state_resource=lookup_state_resource,
    )


def _account_id_source(config: Config, clients: AwsClients) -> str | Callable[[], str]:
    if config.account_id:
        return config.account_id
    if config.backend == "embedded":
        return EMULATOR_ACCOUNT_ID
    return lambda: clients.client("sts").get_caller_identity()["Account"]
