"""Watching the service (CONTRACT 9.7): `GET /metrics` on the real served app (requests, AWS calls,
the store's lag, workflows by status), its reader-only access with auth on, the sum over worker
processes, and the JSON log lines."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import uuid

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import FIXTURES, Api, beside_config, free_port, load_fixture, serve, wait_for
from workflow_manager.config import PROJECT_ROOT

Samples = dict[tuple[str, frozenset], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape(api: Api) -> Samples:
    response = api.get("/metrics")
    assert response.status_code == 200, response.text
    return parse(response.text)


def new_definition(api: Api, fixture: str) -> str:
    body = {**load_fixture(*fixture.split("/")), "name": f"metrics-{uuid.uuid4().hex[:8]}"}
    response = api.post("/workflow-definitions", body)
    assert response.status_code == 201, response.text
    return body["name"]


def start(api: Api, name: str) -> str:
    response = api.post("/workflows", {"workflowDefinition": {"name": name}})
    assert response.status_code == 200, response.text
    return response.json()["id"]


def test_metrics_are_prometheus_text_named_workflow_manager(api):
    response = api.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert {
        "workflow_manager_requests",
        "workflow_manager_request_duration_seconds",
        "workflow_manager_aws_calls",
        "workflow_manager_store_lag_seconds",
        "workflow_manager_workflows",
    } <= names


def test_a_start_and_a_get_are_counted_by_operation_and_status_with_their_aws_calls(api):
    name = new_definition(api, "api/pass-only.json")
    before = scrape(api)
    workflow_id = start(api, name)
    assert api.get(f"/workflows/{workflow_id}").status_code == 200
    after = scrape(api)

    def delta(metric: str, **labels: str) -> float:
        return value(after, metric, **labels) - value(before, metric, **labels)

    assert delta("workflow_manager_requests_total", operation="startWorkflow", status="200") == 1
    assert delta("workflow_manager_requests_total", operation="getWorkflowByID", status="200") == 1
    assert delta("workflow_manager_request_duration_seconds_count", operation="startWorkflow") == 1
    assert delta("workflow_manager_request_duration_seconds_sum", operation="startWorkflow") > 0
    assert (
        delta(
            "workflow_manager_aws_calls_total",
            service="stepfunctions",
            operation="StartExecution",
            outcome="ok",
        )
        >= 1
    )


def test_a_request_matching_no_route_is_counted_unrouted(api):
    before = scrape(api)
    assert api.get("/no-such-route").status_code == 404
    after = scrape(api)
    key = {"operation": "unrouted", "status": "404"}
    assert (
        value(after, "workflow_manager_requests_total", **key)
        - value(before, "workflow_manager_requests_total", **key)
        == 1
    )


def test_an_aws_call_that_fails_is_counted_with_outcome_error(api, served_app):
    from botocore.exceptions import ClientError

    key = {"service": "stepfunctions", "operation": "DescribeExecution", "outcome": "error"}
    before = value(scrape(api), "workflow_manager_aws_calls_total", **key)
    client = served_app.app.runtime.clients.client("stepfunctions")
    missing = "arn:aws:states:us-east-1:123456789012:execution:no-such-machine:no-such-execution"
    with pytest.raises(ClientError):
        client.describe_execution(executionArn=missing)
    assert value(scrape(api), "workflow_manager_aws_calls_total", **key) - before == 1


@pytest.mark.parametrize(
    ("parsed", "http_status", "outcome"),
    [
        ({"ResponseMetadata": {}}, 200, "ok"),
        ({"Error": {"Code": "ThrottlingException"}}, 400, "throttled"),
        ({"Error": {"Code": "ProvisionedThroughputExceededException"}}, 400, "throttled"),
        ({"Error": {"Code": "ExecutionDoesNotExist"}}, 400, "error"),
        ({}, 503, "error"),
    ],
)
def test_an_aws_answer_is_ok_throttled_or_error(parsed, http_status, outcome):
    from workflow_manager.telemetry.aws import outcome_of

    assert outcome_of(parsed, http_status) == outcome


def test_the_store_lag_is_observed_when_a_workflow_finishes(api):
    name = new_definition(api, "api/pass-only.json")
    key = {"status": "succeeded"}
    before = value(scrape(api), "workflow_manager_store_lag_seconds_count", **key)
    workflow_id = start(api, name)
    api.wait_for_status(workflow_id, {"succeeded"})
    after = scrape(api)
    assert value(after, "workflow_manager_store_lag_seconds_count", **key) - before >= 1
    # The pass-only execution stopped well under a minute before the store recorded it.
    assert value(after, "workflow_manager_store_lag_seconds_bucket", status="succeeded", le="60.0") >= 1


def test_active_workflows_are_counted_by_status(api):
    workflow_id = start(api, new_definition(api, "auth/waiting.json"))
    api.wait_for_status(workflow_id, {"running"})
    running = value(scrape(api), "workflow_manager_workflows", status="running")
    assert running >= 1
    assert api.delete(f"/workflows/{workflow_id}", {"reason": "metrics test"}).status_code == 200
    wait_for(
        lambda: value(scrape(api), "workflow_manager_workflows", status="running") == running - 1,
        what="the cancelled workflow to leave the running count",
    )


def test_the_workflows_gauge_reads_at_most_its_limit_and_counts_the_rest_unread():
    from store.memory import MemoryStore
    from tests.test_store_contract import kitchensink, new_workflow
    from workflow_manager.domain.models import WorkflowStatus
    from workflow_manager.services.workflows import WorkflowService

    store = MemoryStore()
    definition = store.save_workflow_definition(kitchensink())
    for status in [WorkflowStatus.RUNNING] * 3 + [WorkflowStatus.QUEUED, WorkflowStatus.SUCCEEDED]:
        store.save_workflow(new_workflow(definition, status=status))
    ended_by_event = new_workflow(definition, status=WorkflowStatus.SUCCEEDED)
    ended_by_event.jobs_pending = True
    store.save_workflow(ended_by_event)
    # The counts read only the store: no executor is needed.
    workflows = WorkflowService(store, executor=None, default_namespace="ns")  # type: ignore[arg-type]
    assert workflows.count_active_by_status() == {"running": 3, "queued": 1, "jobs_pending": 1}
    limited = workflows.count_active_by_status(max_reads=2)
    assert limited["unread"] == 3 and sum(limited.values()) == 5


# With auth on: a reader may scrape; without a token, nobody.


@pytest.fixture(scope="module")
def auth_base_url(served_app):
    served = serve(
        beside_config(served_app, auth_tokens_file=FIXTURES / "metrics" / "tokens.yml", start_workers=False)
    )
    yield f"http://127.0.0.1:{served.port}"
    served.stop()


def test_with_auth_on_metrics_need_a_reader_token(auth_base_url):
    anonymous = requests.get(f"{auth_base_url}/metrics", timeout=30)
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.headers["WWW-Authenticate"] == "Bearer"
    reader = requests.get(
        f"{auth_base_url}/metrics", headers={"Authorization": "Bearer scraper-secret"}, timeout=30
    )
    assert reader.status_code == 200, reader.text
    assert (
        value(parse(reader.text), "workflow_manager_requests_total", operation="getMetrics", status="401")
        >= 1
    )


# Several worker processes: each writes its values to PROMETHEUS_MULTIPROC_DIR, a scrape sums them.

COUNT_IN_A_PROCESS = """
import sys
from workflow_manager.telemetry.metrics import AWS_CALLS, REQUESTS
REQUESTS.labels(operation="getWorkflowByID", status="200").inc(int(sys.argv[1]))
AWS_CALLS.labels(service="stepfunctions", operation="DescribeExecution", outcome="throttled").inc()
"""


def test_a_scrape_sums_the_counters_of_every_worker_process(tmp_path, monkeypatch):
    from workflow_manager.telemetry.metrics import MetricsExporter

    environ = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(PROJECT_ROOT)}
    for count in (3, 4):
        subprocess.run([sys.executable, "-c", COUNT_IN_A_PROCESS, str(count)], env=environ, check=True)
    assert len(list(tmp_path.glob("counter_*.db"))) == 2, "one file per process"

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    body, content_type = MetricsExporter(lambda: {"running": 2}).render()
    samples = parse(body.decode())
    assert value(samples, "workflow_manager_requests_total", operation="getWorkflowByID", status="200") == 7
    assert (
        value(
            samples,
            "workflow_manager_aws_calls_total",
            service="stepfunctions",
            operation="DescribeExecution",
            outcome="throttled",
        )
        == 2
    )
    assert value(samples, "workflow_manager_workflows", status="running") == 2
    assert content_type.startswith("text/plain; version=0.0.4")


def test_gunicorn_gives_the_workers_a_fresh_metrics_directory_and_marks_dead_ones(tmp_path, monkeypatch):
    import runpy

    hooks = runpy.run_path(str(PROJECT_ROOT / "deploy" / "gunicorn.conf.py"))
    given = tmp_path / "given"
    given.mkdir()
    (given / "counter_123.db").write_bytes(b"left over")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(given))
    hooks["on_starting"](object())
    assert list(given.iterdir()) == [], "an earlier run's values are not summed in"

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")

    class Server:
        pass

    server = Server()
    hooks["on_starting"](server)
    created = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    assert os.path.isdir(created) and os.listdir(created) == []
    (tmp_path / "gauge_livesum_77.db").write_bytes(b"")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))

    class Worker:
        pid = 77

    hooks["child_exit"](server, Worker())
    assert not (tmp_path / "gauge_livesum_77.db").exists(), "a dead worker's live gauges are dropped"
    hooks["on_exit"](server)
    assert not os.path.exists(created)


def dynamodb_calls(samples: Samples) -> float:
    return sum(
        v
        for (name, labels), v in samples.items()
        if name == "workflow_manager_aws_calls_total" and ("service", "dynamodb") in labels
    )


def one_file_scrape(counter_file, tmp_path) -> str:
    """What a scrape of one worker's file alone answers."""
    import shutil

    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    alone = tmp_path / f"alone-{counter_file.stem}"
    alone.mkdir()
    shutil.copy(counter_file, alone)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(alone))
    return generate_latest(registry).decode()


def test_gunicorn_with_two_workers_answers_metrics_summed_over_both(served_app, tmp_path):
    metrics_dir = tmp_path / "metrics"
    port = free_port()
    environ = {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "WFM_BACKEND": "endpoint",
        "WFM_AWS_ENDPOINT": served_app.app.runtime.emulator.endpoint_url,
        "WFM_AWS_ACCOUNT_ID": "123456789012",
        "WFM_STORE": "dynamodb",
        "WFM_DYNAMODB_PREFIX": f"metrics-{uuid.uuid4().hex[:8]}",
        "WFM_DYNAMODB_CREATE_TABLES": "true",
        "WFM_UPDATER": "false",
        "WFM_AUTH": "off",
        "WFM_HOST": "127.0.0.1",
        "WFM_PORT": str(port),
        "WFM_WORKERS": "2",
        "WFM_LOG_LEVEL": "warning",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(PROJECT_ROOT / "deploy" / "gunicorn.conf.py")],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "gunicorn.log").open("w"),
    )
    base_url = f"http://127.0.0.1:{port}"
    try:

        def both_workers_serve() -> bool:
            # Each worker counts the DynamoDB calls of its start-up (creating the tables) in a
            # file of its own.
            try:
                answered = requests.get(f"{base_url}/_live", timeout=5).status_code == 200
            except requests.RequestException:  # not listening yet, or still loading the app
                return False
            return answered and len(list(metrics_dir.glob("counter_*.db"))) == 2

        try:
            wait_for(both_workers_serve, timeout=90, interval=0.5, what="two gunicorn workers")
        except AssertionError as err:
            raise AssertionError(f"{err}\n{(tmp_path / 'gunicorn.log').read_text()}") from None
        for _ in range(20):
            # A connection each, so that the requests are spread over the workers.
            assert requests.get(f"{base_url}/_health", timeout=10).status_code == 200
        # Each worker's own DynamoDB calls (both made some at start-up), read before the scrape: the
        # scrape reads the files before its own store query for the workflows by status.
        per_worker = [
            dynamodb_calls(parse(one_file_scrape(path, tmp_path)))
            for path in metrics_dir.glob("counter_*.db")
        ]
        samples = parse(requests.get(f"{base_url}/metrics", timeout=10).text)
        assert value(samples, "workflow_manager_requests_total", operation="healthCheck", status="200") == 20
        assert len(per_worker) == 2 and all(calls > 0 for calls in per_worker)
        assert dynamodb_calls(samples) == sum(per_worker)
    finally:
        server.terminate()
        server.wait(30)


# Logs as JSON lines, with the workflow id.


def test_json_logs_are_one_object_per_line_with_the_workflow_id():
    from workflow_manager.logcontext import working_on
    from workflow_manager.telemetry.logs import log_handler

    stream = io.StringIO()
    logger = logging.getLogger("tests.metrics.json")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(log_handler("json", stream))
    with working_on("wf-123"):
        logger.info("refreshed %s", "it")
        try:
            raise ValueError("first line\nsecond line")
        except ValueError:
            logger.exception("refresh failed")
    logger.warning("not about a workflow", extra={"workflow_id": "wf-456"})
    logger.warning("about nothing")

    lines = stream.getvalue().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(lines) == 4, "a traceback stays inside its line"
    assert [(r["level"], r["message"], r["workflow_id"]) for r in records] == [
        ("INFO", "refreshed it", "wf-123"),
        ("ERROR", "refresh failed", "wf-123"),
        ("WARNING", "not about a workflow", "wf-456"),
        ("WARNING", "about nothing", None),
    ]
    assert records[0]["logger"] == "tests.metrics.json"
    assert "ValueError: first line\\nsecond line" in lines[1]
    assert records[0]["time"].endswith("+00:00")


def test_what_is_logged_while_the_service_works_on_a_workflow_carries_its_id(api, caplog):
    from workflow_manager.logcontext import WorkflowIdFilter

    workflow_id = start(api, new_definition(api, "auth/waiting.json"))
    caplog.handler.addFilter(WorkflowIdFilter())
    # botocore logs each request it makes at DEBUG: the cancel's StopExecution is one.
    caplog.set_level(logging.DEBUG, logger="botocore.endpoint")
    assert api.delete(f"/workflows/{workflow_id}", {"reason": "metrics log test"}).status_code == 200
    stops = [r for r in caplog.records if "StopExecution" in r.getMessage()]
    assert stops, "botocore logged the StopExecution request"
    assert {r.workflow_id for r in stops} == {workflow_id}


GUNICORN_LOGS = """
import logging, logging.config, runpy, sys
settings = runpy.run_path(sys.argv[1])
logging.config.dictConfig(settings["logconfig_dict"])
logging.getLogger("gunicorn.error").info("Booting worker with pid: %s", 42)
"""


def test_gunicorn_logs_its_own_lines_as_json_when_the_service_does():
    conf = str(PROJECT_ROOT / "deploy" / "gunicorn.conf.py")
    environ = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "WFM_BACKEND": "aws", "WFM_LOG_FORMAT": "json"}
    result = subprocess.run(
        [sys.executable, "-c", GUNICORN_LOGS, conf], env=environ, capture_output=True, text=True, check=True
    )
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    record = json.loads(lines[0])
    assert (record["logger"], record["message"]) == ("gunicorn.error", "Booting worker with pid: 42")

    environ["WFM_LOG_FORMAT"] = "text"
    text = subprocess.run(
        [
            sys.executable,
            "-c",
            "import runpy, sys; print(runpy.run_path(sys.argv[1])['logconfig_dict'])",
            conf,
        ],
        env=environ,
        capture_output=True,
        text=True,
        check=True,
    )
    assert text.stdout.strip() == "{}", "text: gunicorn's own format"
