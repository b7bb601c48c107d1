"""The embedded emulator is one server per process: moto's state is process-wide, and MOTO_PORT
(read when a service integration or a Batch job starts) must keep naming a server that is up."""

from __future__ import annotations

import json
import os

import boto3

from workflow_manager.emulator.server import emulator_client_kwargs, start_embedded_emulator


def test_every_caller_shares_one_server_until_the_last_handle_is_released():
    first = start_embedded_emulator()
    second = start_embedded_emulator()
    try:
        assert second.port == first.port
        assert os.environ["MOTO_PORT"] == str(first.port)
        first.stop()
        first.stop()  # releasing a handle twice releases it once
        sfn = boto3.client("stepfunctions", **emulator_client_kwargs(second.endpoint_url))
        assert "stateMachines" in sfn.list_state_machines()
    finally:
        second.stop()


def test_the_emulator_command_serves_one_emulator_that_runs_another_process_s_workflows(tmp_path):
    """`workflow-manager emulator` in a process of its own: a service on `WFM_BACKEND=endpoint`
    runs a Step Functions workflow and a Batch workflow on it (its seeded queue and job
    definitions; the job's command runs in the emulator's process), and SIGTERM stops it."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from tests.conftest import FIXTURES, Api, app_config, free_port, load_fixture, serve

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "workflow_manager.cli", "emulator", "--port", str(port)],
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "WFM_BATCH_JOB_DEFINITIONS_FILE": str(FIXTURES / "batch" / "job-definitions.yml")},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout.readline().strip() == f"emulator: serving on http://127.0.0.1:{port}"
        assert process.stdout.readline().strip().endswith("/workflow-manager-aws-events")
        served = serve(
            app_config(
                backend="endpoint",
                aws_endpoint=f"http://127.0.0.1:{port}",
                account_id="123456789012",
                start_workers=False,
                store="memory",
            )
        )
        try:
            api = Api(f"http://127.0.0.1:{served.port}")
            sfn = {**load_fixture("api", "pass-only.json"), "name": "standalone-pass"}
            assert api.post("/workflow-definitions", sfn).status_code == 201
            batch = {
                "name": "standalone-batch",
                "manager": "batch",
                "stateMachine": {
                    "StartAt": "one",
                    "States": {"one": {"Type": "Task", "Resource": "wfm-test-step", "End": True}},
                },
            }
            assert api.post("/workflow-definitions", batch).status_code == 201
            ids = [
                api.post("/workflows", {"workflowDefinition": {"name": name}, "input": {"n": 1}}).json()["id"]
                for name in ("standalone-pass", "standalone-batch")
            ]
            for workflow_id in ids:
                finished = api.wait_for_status(workflow_id, {"succeeded", "failed", "cancelled"}, timeout=60)
                assert finished["status"] == "succeeded", finished
            [job] = api.get(f"/workflows/{ids[1]}").json()["jobs"]
            assert json.loads(job["output"]) == {"state": "one", "input": {"n": 1}}
        finally:
            served.stop()
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()


def test_with_quotas_the_emulator_throttles_past_a_bucket_as_aws_does():
    """QuotaMiddleware in front of moto's own server application (on a server of its own; moto's
    state is shared): past the bucket, botocore sees ThrottlingException, and actions without a
    quota pass."""
    import threading

    import pytest
    from botocore.config import Config as BotoConfig
    from botocore.exceptions import ClientError
    from moto.moto_server.threaded_moto_server import MotoRequestHandler, make_server
    from moto.server import DomainDispatcherApplication, create_backend_app

    from workflow_manager.emulator.quotas import AWS_API_QUOTAS, QuotaMiddleware, api_action

    assert AWS_API_QUOTAS[("states", "DescribeExecution")] == (250, 15)
    quotas = QuotaMiddleware(
        DomainDispatcherApplication(create_backend_app), {("states", "DescribeExecution"): (3, 0.01)}
    )
    server = make_server("127.0.0.1", 0, quotas, True, request_handler=MotoRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        sfn = boto3.client(
            "stepfunctions",
            **emulator_client_kwargs(url),
            config=BotoConfig(retries={"total_max_attempts": 1}),
        )
        arn = "arn:aws:states:us-east-1:123456789012:execution:no-such-machine:x"
        codes = []
        for _ in range(5):
            with pytest.raises(ClientError) as refused:
                sfn.describe_execution(executionArn=arn)
            codes.append(refused.value.response["Error"]["Code"])
        assert codes == ["ExecutionDoesNotExist"] * 3 + ["ThrottlingException"] * 2
        assert quotas.throttled == {("states", "DescribeExecution"): 2}
        assert "stateMachines" in sfn.list_state_machines()  # no quota: not limited
    finally:
        server.shutdown()
    assert api_action({"PATH_INFO": "/v1/submitjob"}) == ("batch", "SubmitJob")
    assert api_action({"HTTP_X_AMZ_TARGET": "AWSStepFunctions.StartExecution"}) == (
        "states",
        "StartExecution",
    )
