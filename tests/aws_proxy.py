"""An HTTP proxy in front of the emulator that can misbehave as AWS and networks do: answer
ThrottlingException, be slow, lose an answer (forward the request, then drop the connection), or
hold a request until the test lets it go. Tests use it to put faults exactly where they want them
(between two SubmitJob calls, between a save and a StartExecution) without any hook in the code.

Rules are per operation: the X-Amz-Target's last part for the JSON protocols (`StartExecution`,
`PutItem`), the path's last segment for REST ones (Batch: `submitjob`). A rule is called with the
operation's call number (1, 2, ...) and returns what to do with that call, or None to forward it.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

THROTTLE_BODY = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()


@dataclass
class Throttle:
    """Answer 400 ThrottlingException; the request is not forwarded."""


@dataclass
class Refuse:
    """After `after_seconds`, answer 400 with the error `code` and `message`; not forwarded."""

    code: str
    message: str
    after_seconds: float = 0.0


@dataclass
class Delay:
    """Forward after `seconds`."""

    seconds: float


class LoseAnswer:
    """Forward the request (the backend does the work), then close the connection unanswered."""


@dataclass
class Hold:
    """Wait until `release` is set, then forward the request (`forward`) or drop it unanswered."""

    release: threading.Event = field(default_factory=threading.Event)
    forward: bool = True
    arrived: threading.Event = field(default_factory=threading.Event)


Action = Throttle | Refuse | Delay | LoseAnswer | Hold | None
Rule = Callable[[int], Action]


def first_calls(count: int, action: Action) -> Rule:
    """A rule that applies `action` to the first `count` calls."""
    return lambda number: action if number <= count else None


def call_number(wanted: int, action: Action) -> Rule:
    """A rule that applies `action` to call `wanted` only."""
    return lambda number: action if number == wanted else None


class AwsProxy:
    def __init__(self, upstream: str, rules: dict[str, Rule] | None = None):
        target = urlparse(upstream)
        self.rules: dict[str, Rule] = dict(rules or {})
        self.calls: Counter[str] = Counter()
        self.applied: Counter[str] = Counter()
        lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args):
                pass

            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                target_header = self.headers.get("X-Amz-Target") or ""
                operation = (
                    target_header.rsplit(".", 1)[-1]
                    if target_header
                    else self.path.rstrip("/").rsplit("/", 1)[-1]
                )
                with lock:
                    proxy.calls[operation] += 1
                    rule = proxy.rules.get(operation)
                    action = rule(proxy.calls[operation]) if rule else None
                    if action is not None:
                        proxy.applied[operation] += 1
                if isinstance(action, Throttle):
                    self._answer(400, [("Content-Type", "application/x-amz-json-1.0")], THROTTLE_BODY)
                    return
                if isinstance(action, Refuse):
                    time.sleep(action.after_seconds)
                    refusal = json.dumps({"__type": action.code, "message": action.message}).encode()
                    self._answer(400, [("Content-Type", "application/x-amz-json-1.0")], refusal)
                    return
                if isinstance(action, Delay):
                    time.sleep(action.seconds)
                if isinstance(action, Hold):
                    action.arrived.set()
                    action.release.wait()
                    if not action.forward:
                        self.close_connection = True
                        return
                status, headers, payload = self._upstream(body)
                if isinstance(action, LoseAnswer | Hold):
                    # A Hold released after its caller died has nobody to answer.
                    self.close_connection = True
                    if isinstance(action, LoseAnswer):
                        return
                self._answer(status, headers, payload)

            def _upstream(self, body: bytes):
                connection = http.client.HTTPConnection(target.hostname, target.port, timeout=70)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                kept = [
                    (key, value)
                    for key, value in response.getheaders()
                    if key.lower() not in ("transfer-encoding", "connection", "content-length")
                ]
                connection.close()
                return response.status, kept, payload

            def _answer(self, status: int, headers, payload: bytes) -> None:
                try:
                    self.send_response(status)
                    for key, value in headers:
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    self.close_connection = True  # the caller is gone

            do_GET = do_POST = do_PUT = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
