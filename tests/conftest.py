"""Shared fixtures: the real app served over HTTP on a loopback port, on the embedded emulator."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import uvicorn

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

FIXTURES = Path(__file__).parent / "fixtures"
DATA = Path(__file__).parent.parent / "data"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, what: str = ""):
    """Poll `check` until it returns a truthy value, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}: last={last!r}")


class Api:
    """A small HTTP client for the served app."""

    def __init__(self, base_url: str, timeout_seconds: float = 30.0):
        self.base_url = base_url
        self.timeout_seconds = timeout_seconds
        self.session = requests.Session()

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        return self.session.request(method, self.base_url + path, timeout=self.timeout_seconds, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs) -> requests.Response:
        if body is not None:
            kwargs["json"] = body
        return self.request("POST", path, **kwargs)

    def put(self, path: str, body: Any = None, **kwargs) -> requests.Response:
        if body is not None:
            kwargs["json"] = body
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, body: Any = None, **kwargs) -> requests.Response:
        if body is not None:
            kwargs["json"] = body
        return self.request("DELETE", path, **kwargs)

    def wait_for_status(self, workflow_id: str, statuses: set[str], timeout: float = 30.0) -> dict:
        def check():
            workflow = self.get(f"/workflows/{workflow_id}").json()
            return workflow if workflow.get("status") in statuses else None

        return wait_for(check, timeout, 0.2, f"workflow {workflow_id} to reach {statuses}")


class ServedApp:
    def __init__(self, app, port: int):
        self.app = app
        self.port = port
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        wait_for(lambda: self.server.started, 30, 0.05, "the app to serve")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def serve(config) -> ServedApp:
    from workflow_manager.app import create_app

    served = ServedApp(create_app(config), config.port)
    served.start()
    return served


def app_config(**overrides):
    """The tests' service configuration: embedded, on fixture workers and job definitions, with a
    fast updater. A test that serves on another backend is served without tokens (`auth="off"`,
    which deny by default demands there) unless it sets `auth` or `auth_tokens_file` itself."""
    from workflow_manager.config import Config

    config = Config(
        backend="embedded",
        store=os.environ.get("WFM_STORE", "memory"),
        port=free_port(),
        workers_file=FIXTURES / "workers.yml",
        batch_job_definitions_file=FIXTURES / "batch" / "job-definitions.yml",
        updater_tick_seconds=0.2,
        updater_min_interval_seconds=0.2,
        updater_max_interval_seconds=2.0,
    )
    for key, value in overrides.items():
        setattr(config, key, value)
    if not config.embedded and "auth" not in overrides and "auth_tokens_file" not in overrides:
        config.auth = "off"
    return config


def beside_config(served_app, **overrides):
    """A configuration for a second app on the session app's emulator (`backend="endpoint"`), for
    tests that need other settings: a tokens file, allowed integrations, another namespace."""
    return app_config(
        backend="endpoint",
        aws_endpoint=served_app.app.runtime.emulator.endpoint_url,
        account_id="123456789012",
        **overrides,
    )


def proxied_config(proxy_url: str, **overrides):
    """A configuration for an app that reaches AWS through a tests.aws_proxy.AwsProxy at
    `proxy_url` (`backend="endpoint"`), with no workers of its own unless overridden."""
    return app_config(
        backend="endpoint",
        aws_endpoint=proxy_url,
        account_id="123456789012",
        **{"start_workers": False, **overrides},
    )


@pytest.fixture(scope="session")
def served_app():
    served = serve(app_config())
    yield served
    served.stop()


@pytest.fixture(scope="session")
def api(served_app) -> Api:
    return Api(f"http://127.0.0.1:{served_app.port}")


def load_fixture(*parts: str) -> Any:
    return json.loads(FIXTURES.joinpath(*parts).read_text())


class DynamoDbTarget:
    """A moto server on a loopback port for the DynamoDB store's tests. `store()` makes a store with
    tables of its own (a fresh prefix), so tests never see each other's items."""

    def __init__(self) -> None:
        import botocore.session
        from moto.server import ThreadedMotoServer

        from workflow_manager.emulator.moto_compat import apply_moto_compat

        apply_moto_compat()  # fix 9: moto's conditional writes are atomic, as DynamoDB's are
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        # One botocore session: its loader caches the service model, so each store's client is cheap.
        self.botocore_session = botocore.session.get_session()

    def store(self, endpoint_url: str | None = None, create_tables: bool = True, **kwargs):
        import uuid as _uuid

        from store.dynamodb import DynamoDbStore

        store = DynamoDbStore(
            kwargs.pop("prefix", f"test-{_uuid.uuid4().hex[:12]}"),
            endpoint_url=endpoint_url or self.endpoint_url,
            credentials=("testing", "testing"),
            botocore_session=self.botocore_session,
            **kwargs,
        )
        if create_tables:
            store.create_tables()
        return store

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture(scope="session")
def dynamodb():
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    target = DynamoDbTarget()
    yield target
    target.stop()


@pytest.fixture(scope="module")
def emulator():
    """The process's embedded emulator (with its Batch runner), for tests of the adapters on it. The
    emulator is process-wide (moto's backends, MOTO_PORT): MOTO_PORT is left as it was found."""
    from workflow_manager.emulator.server import start_embedded_emulator

    previous_port = os.environ.get("MOTO_PORT")
    running = start_embedded_emulator()
    yield running
    running.stop()
    if previous_port is None:
        os.environ.pop("MOTO_PORT", None)
    else:
        os.environ["MOTO_PORT"] = previous_port


@pytest.fixture(scope="module")
def client_kwargs(emulator) -> dict[str, str]:
    """boto3 client keyword arguments for the emulator."""
    from workflow_manager.emulator.server import emulator_client_kwargs

    return emulator_client_kwargs(emulator.endpoint_url)


@pytest.fixture(scope="module")
def batch_results(client_kwargs):
    """A Batch results table of its own on the emulator."""
    import uuid

    import boto3

    from executor.batch_results import BatchResultsTable

    table = BatchResultsTable(
        boto3.client("dynamodb", **client_kwargs), f"wfm-test-{uuid.uuid4().hex[:8]}-batch-results"
    )
    table.ensure_table()
    return table
