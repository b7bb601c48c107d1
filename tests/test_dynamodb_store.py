"""What only the DynamoDB store has to show, beyond the store contract (tests/test_store_contract.py):
its tables as created and as declared in deploy/, the listing served by index queries, TTL, item
layout of jobs, retries of throttling and transient errors, and that what cannot be done is a 503.

Faults come from a real HTTP proxy on a loopback port between the store and the moto server: it
answers chosen DynamoDB operations with throttling or server errors, before or after forwarding them.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import boto3
import pytest
import yaml

from store.dynamodb.codec import ACTIVE_SHARDS
from store.dynamodb.retry import RetryPolicy
from store.interface import WorkflowQuery
from store.paging import encode_page_token
from tests.conftest import Api, app_config, free_port, serve
from tests.test_store_contract import _job_with_payload, kitchensink, new_workflow
from workflow_manager.domain.errors import (
    BackendUnavailable,
    ConcurrentModification,
    Conflict,
    InvalidInput,
    NotFound,
)
from workflow_manager.domain.models import WorkflowStatus
from workflow_manager.domain.schemas import parse_time

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "dynamodb.cloudformation.yml"
FAST_RETRY = RetryPolicy(attempts=4, base_seconds=0.01, cap_seconds=0.05)


class FaultyDynamoDb:
    """A loopback HTTP proxy to a DynamoDB endpoint that records each operation and answers chosen
    ones with an error: `fail("PutItem", times=2)` throttles the next two PutItem calls;
    `after_forwarding=True` forwards the request first and then answers with the error, as when a
    response is lost after the write landed."""

    def __init__(self, upstream: str):
        self.upstream = urlparse(upstream)
        self.operations: list[tuple[str, dict]] = []
        self._faults: list[dict] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                operation = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
                fault = proxy._take_fault(operation, json.loads(body or b"{}"))
                if fault is not None and not fault["after_forwarding"]:
                    return self._error(fault)
                status, headers, answer = proxy._forward(self.path, self.headers, body)
                if fault is not None:
                    return self._error(fault)
                self.send_response(status)
                for key, value in headers:
                    if key.lower() not in (
                        "content-length",
                        "transfer-encoding",
                        "connection",
                        "server",
                        "date",
                    ):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def _error(self, fault):
                answer = json.dumps(
                    {"__type": f"com.amazonaws.dynamodb.v20120810#{fault['code']}", "message": "injected"}
                ).encode()
                self.send_response(fault["status"])
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def fail(
        self,
        operation: str,
        times: int = 1,
        code: str = "ProvisionedThroughputExceededException",
        status: int = 400,
        after_forwarding: bool = False,
    ) -> None:
        with self._lock:
            self._faults.append(
                {
                    "operation": operation,
                    "times": times,
                    "code": code,
                    "status": status,
                    "after_forwarding": after_forwarding,
                }
            )

    def _take_fault(self, operation: str, body: dict) -> dict | None:
        with self._lock:
            self.operations.append((operation, body))
            for fault in self._faults:
                if fault["operation"] == operation and fault["times"] > 0:
                    fault["times"] -= 1
                    return fault
        return None

    def _forward(self, path, headers, body):
        connection = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=30)
        try:
            forwarded = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length")}
            connection.request("POST", path, body=body, headers=forwarded)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def names(self) -> list[str]:
        return [name for name, _ in self.operations]

    def clear(self) -> None:
        with self._lock:
            self.operations.clear()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def faulty(dynamodb):
    proxy = FaultyDynamoDb(dynamodb.endpoint_url)
    yield proxy
    proxy.stop()


@pytest.fixture
def store(dynamodb):
    return dynamodb.store(retry=FAST_RETRY)


def _raw_client(dynamodb):
    return boto3.client(
        "dynamodb",
        endpoint_url=dynamodb.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _items(dynamodb, table: str, workflow_id: str) -> list[dict]:
    pages = (
        _raw_client(dynamodb)
        .get_paginator("query")
        .paginate(
            TableName=table,
            KeyConditionExpression="workflowId = :id",
            ExpressionAttributeValues={":id": {"S": workflow_id}},
        )
    )
    return [item for page in pages for item in page["Items"]]


# Tables


def test_init_tables_is_idempotent_and_the_template_declares_the_same_tables(dynamodb):
    store = dynamodb.store(create_tables=False)
    assert sorted(store.create_tables()) == sorted(store.table_names())
    assert store.create_tables() == []

    template = yaml.safe_load(TEMPLATE.read_text())
    declared = {
        resource["Properties"]["TableName"]["Fn::Sub"].replace("${Prefix}", store.prefix): resource[
            "Properties"
        ]
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::DynamoDB::Table"
    }
    assert sorted(declared) == sorted(store.table_names())
    client = _raw_client(dynamodb)
    for name, properties in declared.items():
        table = client.describe_table(TableName=name)["Table"]
        assert properties["BillingMode"] == "PAY_PER_REQUEST"
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        assert table["KeySchema"] == properties["KeySchema"], name
        assert sorted(table["AttributeDefinitions"], key=str) == sorted(
            properties["AttributeDefinitions"], key=str
        ), name
        created_indexes = {
            index["IndexName"]: (index["KeySchema"], index["Projection"])
            for index in table.get("GlobalSecondaryIndexes", [])
        }
        declared_indexes = {
            index["IndexName"]: (index["KeySchema"], index["Projection"])
            for index in properties.get("GlobalSecondaryIndexes", [])
        }
        assert created_indexes == declared_indexes, name
        ttl = client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        if "TimeToLiveSpecification" in properties:
            assert ttl["TimeToLiveStatus"] == "ENABLED"
            assert ttl["AttributeName"] == properties["TimeToLiveSpecification"]["AttributeName"]
        else:
            assert ttl["TimeToLiveStatus"] == "DISABLED"


def test_init_tables_command_creates_the_tables_once(dynamodb):
    prefix = f"cli-{os.urandom(4).hex()}"
    env = {
        **os.environ,
        "WFM_BACKEND": "endpoint",
        "WFM_AWS_ENDPOINT": dynamodb.endpoint_url,
        "WFM_DYNAMODB_PREFIX": prefix,
    }
    command = [sys.executable, "-m", "workflow_manager.cli", "init-tables"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert first.returncode == 0, first.stderr
    assert f"{prefix}-workflows: created" in first.stdout
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert second.returncode == 0, second.stderr
    assert f"{prefix}-workflows: exists" in second.stdout and "created" not in second.stdout


# Listing


def test_every_listing_is_one_index_query_never_a_scan(dynamodb, faulty):
    store = dynamodb.store(endpoint_url=faulty.endpoint_url)
    definition = kitchensink()
    for status in (WorkflowStatus.RUNNING, WorkflowStatus.FAILED):
        workflow = new_workflow(definition)
        store.save_workflow(workflow)
        workflow.status = status
        store.update_workflow(workflow)
    queries = {
        "by-name": WorkflowQuery(definition.name),
        "by-name-status": WorkflowQuery(definition.name, status=WorkflowStatus.FAILED),
        "by-name-resolved": WorkflowQuery(definition.name, resolved_by_user=False),
        "by-name-status-resolved": WorkflowQuery(
            definition.name, status=WorkflowStatus.RUNNING, resolved_by_user=False, oldest_first=True
        ),
    }
    for index_name, query in queries.items():
        for summary_only in (True, False):
            faulty.clear()
            query.summary_only = summary_only
            page = store.list_workflows(query)
            assert page.workflows
            assert faulty.names() == ["Query"], (index_name, faulty.names())
            [(_, body)] = faulty.operations
            assert body["IndexName"] == index_name
            assert body["ScanIndexForward"] is query.oldest_first
    faulty.clear()
    store.list_active_workflow_ids()
    assert faulty.names() == ["Query"] * ACTIVE_SHARDS
    assert {body["IndexName"] for _, body in faulty.operations} == {"active"}


def test_page_tokens_the_store_did_not_issue_are_invalid_input(store):
    name = kitchensink().name
    for token in (
        encode_page_token({"createdAt": "yesterday", "id": "x"}),
        encode_page_token({"createdAt": 5, "id": "x"}),
        encode_page_token({"id": "x"}),
        "%%%",
    ):
        with pytest.raises(InvalidInput, match="invalid page token"):
            store.list_workflows(WorkflowQuery(name, page_token=token))


def test_a_full_listing_returns_jobs_and_a_summary_does_not_read_them(dynamodb, faulty):
    store = dynamodb.store(endpoint_url=faulty.endpoint_url)
    workflow = new_workflow(kitchensink())
    workflow.jobs = [_job_with_payload(i, 100) for i in range(3)]
    store.save_workflow(workflow)
    name = workflow.workflow_definition.name
    faulty.clear()
    [summary] = store.list_workflows(WorkflowQuery(name, summary_only=True)).workflows
    assert summary.jobs == [] and faulty.names() == ["Query"]
    [whole] = store.list_workflows(WorkflowQuery(name)).workflows
    assert whole.jobs == workflow.jobs


# Items: TTL, jobs, concurrency


def test_workflow_and_job_items_expire_after_the_retention(dynamodb):
    store = dynamodb.store(retention=timedelta(days=7))
    workflow = new_workflow(kitchensink())
    workflow.jobs = [_job_with_payload(0, 100)]
    store.save_workflow(workflow)
    client = _raw_client(dynamodb)
    item = client.get_item(TableName=f"{store.prefix}-workflows", Key={"id": {"S": workflow.id}})["Item"]
    expected = int((workflow.created_at + timedelta(days=7)).timestamp())
    assert int(item["ttl"]["N"]) == expected
    [job_item] = _items(dynamodb, f"{store.prefix}-workflow-jobs", workflow.id)
    assert int(job_item["ttl"]["N"]) == expected
    assert parse_time(item["createdAt"]["S"]) == workflow.created_at


def test_an_update_rewrites_only_the_jobs_that_changed_and_deletes_what_it_superseded(dynamodb, faulty):
    store = dynamodb.store(endpoint_url=faulty.endpoint_url)
    table = f"{store.prefix}-workflow-jobs"
    workflow = new_workflow(kitchensink())
    workflow.jobs = [_job_with_payload(i, 200) for i in range(60)]
    store.save_workflow(workflow)
    before = {item["part"]["S"] for item in _items(dynamodb, table, workflow.id)}
    assert len(before) == 60

    faulty.clear()
    workflow.jobs[7].status_reason = "changed"
    workflow.jobs = workflow.jobs[:50]
    store.update_workflow(workflow)
    written = [
        request
        for name, body in faulty.operations
        if name == "BatchWriteItem"
        for request in body["RequestItems"][table]
        if "PutRequest" in request
    ]
    assert [r["PutRequest"]["Item"]["part"]["S"][:10] for r in written] == ["job#000007"]
    after = {item["part"]["S"] for item in _items(dynamodb, table, workflow.id)}
    assert len(after) == 50
    assert len(before & after) == 49
    assert store.get_workflow(workflow.id).jobs == workflow.jobs

    store.delete_workflow(workflow.id)
    assert _items(dynamodb, table, workflow.id) == []


def test_large_payloads_are_split_over_items_and_never_pass_the_item_limit(dynamodb):
    store = dynamodb.store()
    workflow = new_workflow(kitchensink())
    big = _job_with_payload(0, 2 * 256 * 1024)  # incompressible hex: over one item when compressed
    workflow.jobs = [big]
    workflow.last_job = big
    workflow.output = big.output
    store.save_workflow(workflow)
    parts = sorted(
        item["part"]["S"] for item in _items(dynamodb, f"{store.prefix}-workflow-jobs", workflow.id)
    )
    assert [p.split("#")[0] for p in parts].count("job") > 1
    assert [p.split("#")[0] for p in parts].count("doc") >= 1
    assert store.get_workflow(workflow.id).jobs == [big]

    found = store.get_workflow(workflow.id)
    found.output = "small"
    found.last_job = None
    store.update_workflow(found)
    parts = sorted(
        item["part"]["S"] for item in _items(dynamodb, f"{store.prefix}-workflow-jobs", workflow.id)
    )
    assert [p.split("#")[0] for p in parts].count("doc") == 0
    assert store.get_workflow(workflow.id).output == "small"


def test_two_replicas_on_the_same_tables_never_overwrite_each_other(dynamodb):
    first = dynamodb.store()
    second = dynamodb.store(prefix=first.prefix, create_tables=False)
    workflow = new_workflow(kitchensink())
    first.save_workflow(workflow)
    a, b = first.get_workflow(workflow.id), second.get_workflow(workflow.id)
    a.status = WorkflowStatus.RUNNING
    first.update_workflow(a)
    b.status_reason = "stale"
    with pytest.raises(ConcurrentModification):
        second.update_workflow(b)
    assert second.get_workflow(workflow.id).status == WorkflowStatus.RUNNING

    definition = kitchensink()
    first.save_workflow_definition(definition)
    assert first.update_workflow_definition(definition.copy()).version == 1
    assert second.update_workflow_definition(definition.copy()).version == 2
    with pytest.raises(Conflict):
        second.save_workflow_definition(definition)


# Throttling, transient errors, unavailability


def test_throttled_and_failing_calls_are_retried_until_the_write_lands(dynamodb, faulty):
    store = dynamodb.store(endpoint_url=faulty.endpoint_url, retry=FAST_RETRY)
    workflow = new_workflow(kitchensink())
    workflow.jobs = [_job_with_payload(0, 100)]
    faulty.fail("BatchWriteItem", times=2)
    faulty.fail("PutItem", times=1, code="ThrottlingException")
    faulty.fail("PutItem", times=1, code="InternalServerError", status=500)
    faulty.fail("GetItem", times=3)
    store.save_workflow(workflow)
    found = store.get_workflow(workflow.id)
    assert found.jobs == workflow.jobs
    assert faulty.names().count("PutItem") == 3 and faulty.names().count("GetItem") == 4


def test_a_retried_write_whose_first_attempt_landed_is_not_a_conflict(dynamodb, faulty):
    store = dynamodb.store(endpoint_url=faulty.endpoint_url, retry=FAST_RETRY)
    workflow = new_workflow(kitchensink())
    faulty.fail("PutItem", times=1, code="InternalServerError", status=500, after_forwarding=True)
    store.save_workflow(workflow)  # the retry's condition fails on the write that landed: ours
    workflow.status = WorkflowStatus.RUNNING
    faulty.fail("PutItem", times=1, code="InternalServerError", status=500, after_forwarding=True)
    store.update_workflow(workflow)
    assert store.get_workflow(workflow.id).revision == workflow.revision == 2

    definition = kitchensink()
    faulty.fail("PutItem", times=1, code="InternalServerError", status=500, after_forwarding=True)
    store.save_workflow_definition(definition)
    assert store.latest_workflow_definition(definition.name).version == 0
    assert faulty.names().count("PutItem") == 3 * 2 + 1  # each write twice; the latest copy once


def test_persistent_throttling_is_backend_unavailable_and_nothing_is_half_written(dynamodb, faulty):
    store = dynamodb.store(endpoint_url=faulty.endpoint_url, retry=FAST_RETRY)
    workflow = new_workflow(kitchensink())
    faulty.fail("PutItem", times=100)
    with pytest.raises(BackendUnavailable, match="ProvisionedThroughputExceededException"):
        store.save_workflow(workflow)
    assert faulty.names().count("PutItem") == FAST_RETRY.attempts
    with pytest.raises(NotFound, match=workflow.id):
        store.get_workflow(workflow.id)


def test_an_unreachable_store_is_a_503_from_the_api(dynamodb):
    closed = f"http://127.0.0.1:{free_port()}"
    store = dynamodb.store(endpoint_url=closed, create_tables=False, retry=FAST_RETRY)
    with pytest.raises(BackendUnavailable):
        store.check_health()
    with pytest.raises(BackendUnavailable):
        store.get_workflow("x")

    config = app_config(
        store="dynamodb",
        dynamodb_endpoint=closed,
        dynamodb_create_tables=False,
        updater_enabled=False,
        start_workers=False,
    )
    served = serve(config)
    try:
        api = Api(f"http://127.0.0.1:{config.port}")
        for path in ("/_health", "/workflows/x", "/workflow-definitions"):
            response = api.get(path)
            assert response.status_code == 503, (path, response.text)
            assert "DynamoDB" in response.json()["message"]
    finally:
        served.stop()


def test_missing_tables_are_backend_unavailable_naming_init_tables(dynamodb):
    store = dynamodb.store(create_tables=False)
    with pytest.raises(BackendUnavailable, match="init-tables"):
        store.check_health()
    with pytest.raises(BackendUnavailable, match="init-tables"):
        store.get_workflow("x")
