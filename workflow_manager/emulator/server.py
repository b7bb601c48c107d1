"""The embedded AWS emulator: an in-process moto server whose Step Functions really execute.

This is the default ("embedded") mode of the service: no AWS account, no Docker. Constraints that
shaped it:

- `stepfunctions.execute_state_machine` must be on before anything is created: moto keeps executing
  state machines in a separate backend, so ones created before the switch are invisible after it.
- Step Functions service integrations (e.g. `batch:submitJob`) call `http://localhost:$MOTO_PORT`
  from inside the server, so `MOTO_PORT` in this process's environment must be the port the server
  listens on (moto's default is 5000).
- moto's executing backend needs the fixes in `workflow_manager.emulator.moto_compat` (activities, StopExecution,
  service integration casing, ...); they are applied here, before the server answers.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from moto.core.config import default_user_config
from moto.moto_server.threaded_moto_server import MotoRequestHandler, make_server
from moto.server import DomainDispatcherApplication, ThreadedMotoServer, create_backend_app

from workflow_manager.emulator import DUMMY_CREDENTIALS
from workflow_manager.emulator.batch_runner import install_batch_runner
from workflow_manager.emulator.events import install_event_emission
from workflow_manager.emulator.moto_compat import apply_moto_compat
from workflow_manager.emulator.quotas import QuotaMiddleware

DEFAULT_REGION = "us-east-1"
# How long start_embedded_emulator waits for the server to answer its first request.
STARTUP_TIMEOUT_SECONDS = 10.0


@dataclass
class EmbeddedEmulator:
    """A handle on the process's embedded moto server. `stop()` releases the handle; the server
    stops when its last handle is released. moto's backends (and their state) live on."""

    endpoint_url: str
    port: int
    _released: bool = field(default=False, repr=False)

    def stop(self) -> None:
        if not self._released:
            self._released = True
            _release_server()


@dataclass
class _RunningServer:
    server: ThreadedMotoServer
    host: str
    port: int
    handles: int


# moto's backends are global to the process, so a second server would serve the same state: every
# caller shares one server. Sharing it also keeps MOTO_PORT (read by the Step Functions service
# integrations and the Batch runner when a task or job starts) naming a server that is still up.
_running: _RunningServer | None = None
_running_lock = threading.Lock()


def start_embedded_emulator(port: int = 0, host: str = "127.0.0.1", quotas: str = "off") -> EmbeddedEmulator:
    """Start moto in this process with Step Functions execution on and the local Batch runner
    installed, and return once it answers; or, when it already runs (on `port`, or `port` is 0),
    another handle on it. `port=0` picks a free port. Sets `MOTO_PORT` in `os.environ` to the port
    it listens on."""
    global _running
    with _running_lock:
        if _running is not None and port in (0, _running.port) and host == _running.host:
            _running.handles += 1
            return EmbeddedEmulator(f"http://{host}:{_running.port}", _running.port)
        if _running is not None:
            raise RuntimeError(
                f"an embedded emulator already runs on {_running.host}:{_running.port};"
                f" one process has one (moto's state is process-wide)"
            )
        _running = _start_server(port, host, quotas)
        return EmbeddedEmulator(f"http://{host}:{_running.port}", _running.port)


def _release_server() -> None:
    global _running
    with _running_lock:
        if _running is None:
            return
        _running.handles -= 1
        if _running.handles == 0:
            _running.server.stop()
            _running = None


class _EmulatorServer(ThreadedMotoServer):
    """moto's threaded server, with AWS's API rates in front when `quotas` is "aws"."""

    def __init__(self, *args: Any, quotas: str = "off", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.quotas: QuotaMiddleware | None = None
        self._quota_mode = quotas

    def _server_entry(self) -> None:
        app: Any = DomainDispatcherApplication(create_backend_app)
        if self._quota_mode == "aws":
            app = self.quotas = QuotaMiddleware(app)
        self._server = make_server(
            self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()


def _start_server(port: int, host: str, quotas: str = "off") -> _RunningServer:
    apply_moto_compat()
    # Step Functions and Batch status changes as EventBridge events, as AWS sends them.
    install_event_emission()
    # Batch jobs really run: their container commands as local subprocesses, through
    # PENDING, RUNNABLE, STARTING and RUNNING, honouring dependsOn.
    install_batch_runner()
    default_user_config.setdefault("stepfunctions", {})["execute_state_machine"] = True

    # werkzeug logs every request at INFO: one line per SDK call and activity poll of the service.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    # The interpreter logs an ERROR with a full state dump for every failure event, expected ones
    # (a task's failure, a stop, a timeout) included; the service reports them on the workflow.
    logging.getLogger("moto.stepfunctions.parser.asl.component.eval_component").setLevel(logging.CRITICAL)
    server = _EmulatorServer(ip_address=host, port=port, verbose=False, quotas=quotas)
    server.start()
    bound_port = server.get_host_and_port()[1]
    os.environ["MOTO_PORT"] = str(bound_port)
    try:
        _wait_until_answering(host, bound_port)
    except TimeoutError:
        server.stop()
        raise
    return _RunningServer(server=server, host=host, port=bound_port, handles=1)


def emulator_client_kwargs(endpoint_url: str) -> dict[str, str]:
    """Keyword arguments for `boto3.client(service, **kwargs)` against the emulator."""
    return {
        "endpoint_url": endpoint_url,
        "region_name": os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
        **DUMMY_CREDENTIALS,
    }


def _wait_until_answering(host: str, port: int) -> None:
    # ThreadedMotoServer.start() returns once the socket is bound; a request proves it serves.
    request = f"GET /moto-api/ HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode()
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while True:
        try:
            with socket.create_connection((host, port), timeout=1) as connection:
                connection.sendall(request)
                if connection.recv(12).startswith(b"HTTP/"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"embedded moto server on {host}:{port} did not answer")
        time.sleep(0.05)
