"""Wiring: `create_app(config)` builds the store, the executors, the domain services, the background
updater and (in embedded mode) the emulator and activity workers, and hands the services to the
handlers. It is the one place that knows which implementation serves which port, and the one place
that turns errors into HTTP responses.

Serve with gunicorn and uvicorn workers (`deploy/gunicorn.conf.py`); in embedded mode the emulator
lives in the process, so there is one worker process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import connexion
import inflection
import yaml
from connexion.exceptions import ProblemException
from connexion.lifecycle import ConnexionResponse
from connexion.middleware import MiddlewarePosition
from connexion.resolver import Resolver
from starlette.exceptions import HTTPException as StarletteHTTPException

from executor.batch import BatchExecutor
from executor.moto_batch import ensure_batch_environment, load_job_definitions
from executor.routing import ExecutorRouter
from executor.sfn import StepFunctionsExecutor
from store.interface import Store
from store.memory import MemoryStore
from workflow_manager.aws import AwsClients
from workflow_manager.batch_output import BatchResultsTable, results_table_name
from workflow_manager.config import EMULATOR_ACCOUNT_ID, PROJECT_ROOT, Config
from workflow_manager.errors import NotFound, WorkflowManagerError
from workflow_manager.handlers import Handlers
from workflow_manager.models import Manager, StateResource
from workflow_manager.services import DefinitionService, StateResourceService, WorkflowService
from workflow_manager.updater import BackgroundUpdater

log = logging.getLogger(__name__)

SPEC_FILE = "swagger.yml"


@dataclass
class Runtime:
    """What a running service owns, so that shutdown can stop it in order."""

    config: Config
    store: Store
    workflows: WorkflowService
    clients: AwsClients
    updater: BackgroundUpdater | None = None
    emulator: Any = None
    workers: Any = None
    _stopped: bool = field(default=False, repr=False)

    def start_background(self) -> None:
        if self.updater is not None:
            self.updater.start()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.updater is not None:
            self.updater.stop()
        if self.workers is not None:
            self.workers.stop()
        if self.emulator is not None:
            self.emulator.stop()


def build_runtime(config: Config) -> tuple[Runtime, Handlers]:
    emulator = None
    endpoint = config.aws_endpoint
    if config.backend == "embedded":
        from workflow_manager.emulator import start_embedded_emulator

        emulator = start_embedded_emulator(port=config.emulator_port)
        endpoint = emulator.endpoint_url
        log.info("embedded AWS emulator listening on %s", endpoint)
    clients = AwsClients(config.backend, config.region, endpoint)

    store = _build_store(config, clients)

    def lookup_state_resource(namespace: str, name: str) -> StateResource | None:
        try:
            return store.get_state_resource(namespace, name)
        except NotFound:
            return None

    sfn_client = clients.client("stepfunctions")
    sfn = StepFunctionsExecutor(
        sfn_client,
        region=config.region,
        account_id=_account_id_source(config, clients),
        role_arn=config.sfn_role_arn,
        lookup_state_resource=lookup_state_resource,
    )
    executors: dict[Manager, Any] = {Manager.STEP_FUNCTIONS: sfn}
    if config.batch_enabled:
        executors[Manager.BATCH] = _build_batch_executor(config, clients, lookup_state_resource)
    executor = ExecutorRouter(executors)
    workflows = WorkflowService(store, executor, config.default_namespace)

    def check_health() -> None:
        store.check_health()
        executor.check_health()

    handlers = Handlers(
        DefinitionService(store, executor), workflows, StateResourceService(store), check_health
    )
    runtime = Runtime(config=config, store=store, workflows=workflows, clients=clients)
    runtime.emulator = emulator
    if config.updater_enabled:
        runtime.updater = BackgroundUpdater(
            workflows,
            tick_seconds=config.updater_tick_seconds,
            min_interval_seconds=config.updater_min_interval_seconds,
            max_interval_seconds=config.updater_max_interval_seconds,
        )
    if config.start_workers and config.workers_file is not None and config.workers_file.exists():
        from workflow_manager.worker import start_workers_from_file

        runtime.workers = start_workers_from_file(
            sfn_client, config.workers_file, config.default_namespace, threading.Event()
        )
    return runtime, handlers


def _build_store(config: Config, clients: AwsClients) -> Store:
    if config.store == "memory":
        return MemoryStore()
    if config.store == "dynamodb":
        store = build_dynamodb_store(config, clients)
        create = config.dynamodb_create_tables
        if create if create is not None else config.backend == "embedded":
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
    from workflow_manager.aws import DUMMY_CREDENTIALS

    endpoint = config.dynamodb_endpoint
    if endpoint is None and config.backend in ("embedded", "endpoint"):
        endpoint = clients.endpoint_url
    if endpoint is None and config.backend == "localstack":
        import localstack_client.config

        endpoint = localstack_client.config.get_service_endpoint("dynamodb")
    credentials = None
    if config.backend != "aws":
        credentials = (DUMMY_CREDENTIALS["aws_access_key_id"], DUMMY_CREDENTIALS["aws_secret_access_key"])
    return DynamoDbStore(
        config.dynamodb_prefix,
        region=config.region,
        endpoint_url=endpoint,
        credentials=credentials,
        retention=timedelta(days=config.workflow_retention_days),
    )


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
        # The emulator starts empty: give it the results table, a compute environment, the job
        # queue and the job definitions the examples use.
        results.ensure_table()
        job_definitions = (
            load_job_definitions(config.batch_job_definitions_file)
            if config.batch_job_definitions_file is not None and config.batch_job_definitions_file.exists()
            else {}
        )
        ensure_batch_environment(
            batch_client,
            clients.client("iam"),
            job_definitions,
            queue_name=config.batch_default_queue,
        )
    return BatchExecutor(
        batch_client,
        results,
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


# Errors -> responses, in one place.


def _json_response(status: int, message: str, headers: dict | None = None) -> ConnexionResponse:
    return ConnexionResponse(
        status_code=status,
        mimetype="application/json",
        content_type="application/json",
        body=json.dumps({"message": message}),
        headers=headers or {},
    )


def _domain_error(_request, exc: WorkflowManagerError) -> ConnexionResponse:
    if exc.status >= 500:
        log.error("request failed: %s", exc.message)
    return _json_response(exc.status, exc.message)


def _problem(_request, exc: ProblemException) -> ConnexionResponse:
    detail = str(exc.detail or exc.title or "bad request").strip().splitlines()[0]
    return _json_response(exc.status, detail, dict(exc.headers or {}))


class AllowedMethods:
    """The methods the spec declares for a request path, for the `Allow` header of a 405 (the
    router names only the methods of the first route that matched the path)."""

    def __init__(self, spec_path: Path):
        paths = yaml.safe_load(spec_path.read_text())["paths"]
        self._routes = [
            (
                re.compile("^" + re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template)) + "/?$"),
                sorted(method.upper() for method in operations if not method.startswith("x-")),
            )
            for template, operations in paths.items()
        ]

    def for_path(self, path: str) -> list[str]:
        return next((methods for pattern, methods in self._routes if pattern.match(path)), [])


def _http_error_handler(allowed: AllowedMethods):
    def handle(request, exc: StarletteHTTPException) -> ConnexionResponse:
        message = str(exc.detail or "").strip().splitlines()[0] if exc.detail else ""
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            methods = allowed.for_path(request.url.path)
            if methods:
                headers["Allow"] = ", ".join(methods)
            message = f"method {request.method} is not allowed on {request.url.path}"
        return _json_response(exc.status_code, message or "error", headers)

    return handle


def _undecodable_body(_request, exc: UnicodeDecodeError) -> ConnexionResponse:
    return _json_response(400, f"request body is not valid UTF-8: {exc.reason}")


def _unexpected(_request, exc: Exception) -> ConnexionResponse:
    log.exception("unhandled error", exc_info=exc)
    return _json_response(500, f"internal error: {type(exc).__name__}")


class RequestLimitsMiddleware:
    """Answers 413 for a body over the limit, 503 for a request over the timeout (the reference
    wrapped its router in http.TimeoutHandler(5s)) and 400 for a path with control characters,
    before and around everything else."""

    def __init__(self, app, max_body_bytes: int, timeout_seconds: float):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.timeout_seconds = timeout_seconds

    async def _send_error(self, send, status: int, message: str) -> None:
        body = json.dumps({"message": message}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if any(ord(c) < 32 or ord(c) == 127 for c in scope.get("path", "")):
            # No name the API knows can hold a control character, and the router does not
            # match paths with a newline consistently: answer before routing.
            await self._send_error(send, 400, "request path contains control characters")
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        too_large = f"request body is over the limit of {self.max_body_bytes} bytes"
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await self._send_error(send, 413, too_large)
            return
        received = 0
        response_started = False

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message):
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await asyncio.wait_for(self.app(scope, limited_receive, tracking_send), self.timeout_seconds)
        except _BodyTooLarge:
            if not response_started:
                await self._send_error(send, 413, too_large)
        except TimeoutError:
            if not response_started:
                await self._send_error(send, 503, "Request timed out")


class _BodyTooLarge(Exception):
    pass


class CurlFriendlyMiddleware:
    """Lets the reference README's curl flow work as written: `curl -d` sends a JSON body as
    `application/x-www-form-urlencoded` (or with no type), and the README posts to `/jobs/` with a
    trailing slash. Such bodies are read as JSON, and a trailing slash is ignored."""

    _JSON_TYPES = (b"", b"application/x-www-form-urlencoded")

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            scope = dict(scope)
            path = scope.get("path", "")
            if len(path) > 1 and path.endswith("/") and not path.startswith("/ui"):
                scope["path"] = path.rstrip("/") or "/"
                scope["raw_path"] = scope["path"].encode()
            headers = [(k, v) for k, v in scope.get("headers", [])]
            content_type = next((v for k, v in headers if k == b"content-type"), b"")
            has_body = any(k in (b"content-length", b"transfer-encoding") for k, _ in headers)
            if has_body and content_type.split(b";")[0].strip().lower() in self._JSON_TYPES:
                headers = [(k, v) for k, v in headers if k != b"content-type"]
                headers.append((b"content-type", b"application/json"))
                scope["headers"] = headers
        await self.app(scope, receive, send)


def _serve_raw_spec() -> None:
    """Connexion 3.3 serves /swagger.json with every $ref resolved inline, which loops forever on
    our recursive States Language models (spec-first/connexion#2095): serve the raw spec."""
    from connexion.middleware import swagger_ui

    def raw_spec(self, request):
        spec = self.specification.with_base_path(self._base_path_for_prefix(request)).raw
        spec["basePath"] = spec.get("basePath") or "/"
        return spec

    swagger_ui.SwaggerUIAPI._spec_for_prefix = raw_spec


def create_app(config: Config | None = None) -> connexion.FlaskApp:
    config = config or Config.from_env()
    _serve_raw_spec()
    runtime, handlers = build_runtime(config)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        runtime.start_background()
        try:
            yield
        finally:
            runtime.stop()

    app = connexion.FlaskApp(__name__, specification_dir=str(PROJECT_ROOT), lifespan=lifespan)
    app.add_api(
        SPEC_FILE,
        strict_validation=True,
        pythonic_params=True,
        resolver=Resolver(
            function_resolver=lambda operation_id: getattr(handlers, inflection.underscore(operation_id))
        ),
    )
    app.add_error_handler(WorkflowManagerError, _domain_error)
    app.add_error_handler(ProblemException, _problem)
    app.add_error_handler(
        StarletteHTTPException, _http_error_handler(AllowedMethods(PROJECT_ROOT / SPEC_FILE))
    )
    app.add_error_handler(UnicodeDecodeError, _undecodable_body)
    app.add_error_handler(Exception, _unexpected)
    app.add_middleware(
        RequestLimitsMiddleware,
        position=MiddlewarePosition.BEFORE_EXCEPTION,
        max_body_bytes=config.max_body_bytes,
        timeout_seconds=config.request_timeout_seconds,
    )
    app.add_middleware(CurlFriendlyMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION)
    app.runtime = runtime
    return app
