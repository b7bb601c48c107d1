"""Throttling (issue 9): an HTTP proxy in front of the session's emulator answers
`ThrottlingException` to the first calls of some Step Functions operations, as AWS does past its
quotas. Nothing is lost and nothing is left false: a start that stays throttled is a 503 that left
no record, its repeat with the same Idempotency-Key starts the workflow once, and the updater,
throttled too, still records the workflow's end."""

from __future__ import annotations

import http.client
import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import pytest

from tests.conftest import Api, app_config, load_fixture, serve, wait_for

THROTTLE_BODY = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()


class ThrottlingProxy:
    """Forwards every request to `upstream`, except that the first `budget[operation]` calls of an
    operation (the X-Amz-Target's last part) get a ThrottlingException."""

    def __init__(self, upstream: str, budget: dict[str, int]):
        target = urlparse(upstream)
        self.budget = dict(budget)
        self.calls: Counter[str] = Counter()
        self.throttled: Counter[str] = Counter()
        lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args):
                pass

            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                operation = (self.headers.get("X-Amz-Target") or "").rsplit(".", 1)[-1]
                with lock:
                    proxy.calls[operation] += 1
                    throttle = proxy.budget.get(operation, 0) > 0
                    if throttle:
                        proxy.budget[operation] -= 1
                        proxy.throttled[operation] += 1
                if throttle:
                    self.send_response(400)
                    self.send_header("Content-Type", "application/x-amz-json-1.0")
                    self.send_header("Content-Length", str(len(THROTTLE_BODY)))
                    self.end_headers()
                    self.wfile.write(THROTTLE_BODY)
                    return
                connection = http.client.HTTPConnection(target.hostname, target.port, timeout=70)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                connection.close()

            do_GET = do_POST = do_PUT = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def throttled_api(served_app):
    # wiring.RETRY_CONFIG's `max_attempts: 5` is botocore's retries after the first try: 6 throttled
    # StartExecution calls exhaust one start; 12 DescribeExecution ones fail two whole refreshes.
    proxy = ThrottlingProxy(
        served_app.app.runtime.emulator.endpoint_url, {"StartExecution": 6, "DescribeExecution": 12}
    )
    served = serve(
        app_config(
            backend="endpoint",
            aws_endpoint=proxy.url,
            account_id="123456789012",
            start_workers=False,
            request_timeout_seconds=60,
        )
    )
    yield Api(f"http://127.0.0.1:{served.port}"), proxy
    served.stop()
    proxy.stop()


def test_a_throttled_start_leaves_no_record_and_its_repeat_ends_true(throttled_api):
    api, proxy = throttled_api
    body = {**load_fixture("api", "pass-only.json"), "name": "throttled-pass-only"}
    assert api.post("/workflow-definitions", body).status_code == 201
    start = {"workflowDefinition": {"name": body["name"]}, "input": {"n": 1}}
    key = {"Idempotency-Key": "throttled-start-1"}

    refused = api.post("/workflows", start, headers=key)
    assert refused.status_code == 503, (refused.text, proxy.calls, proxy.throttled)
    assert refused.json()["message"] == "StartExecution: Step Functions is unavailable: Rate exceeded"
    assert proxy.throttled["StartExecution"] == 6
    assert api.get(f"/workflows?workflowDefinitionName={body['name']}").json() == []

    started = api.post("/workflows", start, headers=key)
    assert started.status_code == 200, started.text
    workflow_id = started.json()["id"]
    finished = wait_for(
        lambda: (wf := api.get(f"/workflows/{workflow_id}").json())["status"] == "succeeded" and wf,
        60,
        0.5,
        "the workflow to be recorded succeeded",
    )
    assert [job["state"] for job in finished["jobs"]] == []  # a Pass state makes no job
    assert finished["stoppedAt"]
    assert proxy.throttled["DescribeExecution"] == 12
    listed = api.get(f"/workflows?workflowDefinitionName={body['name']}").json()
    assert [w["id"] for w in listed] == [workflow_id]
    assert api.post("/workflows", start, headers=key).json()["id"] == workflow_id
