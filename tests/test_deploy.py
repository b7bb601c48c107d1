"""The deployable stack in deploy/: the image, the CloudFormation templates and the IAM they grant.

- The Dockerfile cannot be built here (no docker daemon), so its instructions are parsed and the
  essentials checked: the base, a non-root USER before the command, `workflow-manager serve`, the
  port the service and the stack use, a HEALTHCHECK on /_ready, and that the files the command line
  finds next to the package (config.PROJECT_ROOT) are in the image where it looks. The entry point
  script is run for real (it is plain sh).
- cfn-lint (as a library) lints every template in deploy/: no errors and no warnings.
- The task role allows every AWS operation the service's code calls. The calls are found by a scan
  of the code for the names that hold clients (`self._sfn.<op>(`, `self._batch.<op>(`,
  `get_paginator("<op>")`, ...), mapped to their API names by botocore itself
  (`client.meta.method_to_api_mapping`); the DynamoDB store calls DynamoDB through pynamodb, whose
  model methods are mapped to DynamoDB actions by PYNAMODB_ACTIONS below. The few calls the role
  leaves out on purpose are in SERVICE_CALLS_NOT_GRANTED, each with its reason, and the reason is
  checked. A new call in the code that the role does not allow fails the test.
- The templates are deployed into moto's CloudFormation (a moto server in its own process): the tables, the
  queues with their redrive policy, the rules with their patterns and targets, the roles, the ECS
  service, the load balancer's target group. An event sent to EventBridge reaches the queue when it
  is the service's and does not when it is not. moto's CloudFormation does not support
  AWS::SQS::QueuePolicy and AWS::CloudWatch::Alarm (it warns and creates nothing): those two are
  checked in the template instead (that part only is skipped in moto), and moto does not enforce
  the queue policy on EventBridge's delivery. It also reports the ECS service's launch type as EC2
  whatever the template says, and drops the task definition's TaskRoleArn, ExecutionRoleArn, NetworkMode
  and RequiresCompatibilities (those are checked in the template), and leaves an AWS::NoValue
  element of a list as null where CloudFormation drops it (the test skips the nulls).
"""

from __future__ import annotations

import ast
import inspect
import json
import os
import re
import shlex
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from cfnlint.api import ManualArgs, lint_file

from executor.batch_results import BatchResultsTable
from tests.conftest import free_port, wait_for
from workflow_manager import cli
from workflow_manager.config import _ENVIRONMENT, PROJECT_ROOT, Config

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
ENTRYPOINT = DEPLOY / "docker-entrypoint.sh"
SERVICE_TEMPLATE = DEPLOY / "workflow-manager.cloudformation.yml"
TABLES_TEMPLATE = DEPLOY / "dynamodb.cloudformation.yml"
TEMPLATES = sorted(DEPLOY.glob("*.cloudformation.yml"))
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's
QUEUE_ARN = f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/wfm-default"

# Names in the code that hold a boto3 client, and the service (botocore's name) each is a client of.
CLIENT_NAMES = {
    "_sfn": "stepfunctions",
    "sfn_client": "stepfunctions",
    "_batch": "batch",
    "_submitter": "batch",
    "batch_client": "batch",
    "_dynamodb": "dynamodb",
    "_sqs": "sqs",  # executor/aws_events.py SqsEventSource (the events queue's reader)
}
# executor/activity_worker/poller.py names its Step Functions client `self._client`.
FILE_CLIENT_NAMES = {"executor/activity_worker/poller.py": {"_client": "stepfunctions"}}
IAM_PREFIX = {"stepfunctions": "states", "batch": "batch", "dynamodb": "dynamodb", "sqs": "sqs"}
# API actions whose IAM permission has another name ("DeleteMessageBatch ... uses the
# sqs:DeleteMessage permission", Amazon SQS API permissions reference).
IAM_ACTION_OF_API = {"sqs:DeleteMessageBatch": "sqs:DeleteMessage"}
# pynamodb Model / Connection methods the DynamoDB store uses, and the DynamoDB action each is. A
# `.get(` of a dict counts as GetItem too: the scan may ask for more than needed, never for less.
PYNAMODB_ACTIONS = {
    "get": "GetItem",
    "query": "Query",
    "scan": "Scan",
    "save": "PutItem",
    "update": "UpdateItem",
    "delete": "DeleteItem",
    "batch_get": "BatchGetItem",
    "batch_write": "BatchWriteItem",
    "batch_write_item": "BatchWriteItem",
    "describe_table": "DescribeTable",
    "exists": "DescribeTable",
    "create_table": "CreateTable",
    "update_ttl": "UpdateTimeToLive",
    "describe_time_to_live": "DescribeTimeToLive",
}
# The service's code (what the task role serves); the activity worker and the Batch jobs' commands
# run under roles of their own (the template's ActivityWorkerPolicy and BatchJobResultsPolicy), and
# the embedded emulator (workflow_manager/emulator/) only ever talks to itself.
SERVICE_FILES = [
    *sorted((ROOT / "executor").glob("*.py")),
    *sorted((ROOT / "store").rglob("*.py")),
    *sorted(p for p in (ROOT / "workflow_manager").rglob("*.py") if "emulator" not in p.parts),
]
ACTIVITY_WORKER_FILES = sorted((ROOT / "executor" / "activity_worker").glob("*.py"))
# Calls the task role does not allow, on purpose (action -> who makes them);
# test_calls_left_out_of_the_task_role_are_never_made_by_the_stack checks that the stack's service does not.
SERVICE_CALLS_NOT_GRANTED = {
    # BatchResultsTable.ensure_table: called by the embedded seeding only; the stack creates the table.
    "dynamodb:CreateTable": "ensure_table or init-tables",
    "dynamodb:UpdateTimeToLive": "ensure_table or init-tables",
    # DynamoDbStore.create_tables (`workflow-manager init-tables`, or WFM_DYNAMODB_CREATE_TABLES): the
    # stack sets WFM_DYNAMODB_CREATE_TABLES=false and the tables stack makes the tables.
    "dynamodb:DescribeTimeToLive": "ensure_table or init-tables",
    # The account id when WFM_AWS_ACCOUNT_ID is unset; the stack sets it, and GetCallerIdentity
    # needs no permission anyway.
    "sts:GetCallerIdentity": "account id",
}
# Actions without resource-level permissions (the IAM Service Authorization Reference): the only
# ones a statement of the stack may grant on "*".
NO_RESOURCE_LEVEL = {
    "states:ListStateMachines",
    "states:ListActivities",
    "states:SendTaskSuccess",
    "states:SendTaskFailure",
    "states:SendTaskHeartbeat",
    "batch:DescribeJobs",
    "batch:ListJobs",
    "batch:DescribeJobQueues",
}


# The Dockerfile


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text = pending + stripped
        pending = ""
        keyword, _, arguments = text.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    assert not pending, "the Dockerfile ends in a continuation line"
    return instructions


def _last(instructions: list[tuple[str, str]], keyword: str) -> tuple[int, str]:
    found = [(i, args) for i, (k, args) in enumerate(instructions) if k == keyword]
    assert found, f"no {keyword} in the Dockerfile"
    return found[-1]


def _env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, arguments in instructions:
        if keyword == "ENV":
            for pair in shlex.split(arguments):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def test_dockerfile_runs_workflow_manager_serve_as_a_non_root_user_on_the_service_port():
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")

    user_at, user = _last(instructions, "USER")
    cmd_at, cmd = _last(instructions, "CMD")
    entry_at, entrypoint = _last(instructions, "ENTRYPOINT")
    name = user.split(":")[0]
    assert name not in ("root", "0"), user
    assert user_at < cmd_at and user_at < entry_at, "USER must come before the command"
    # The user exists: a RUN creates it with that uid (or name).
    created = [args for k, args in instructions if k == "RUN" and "useradd" in args]
    assert created and (f"--uid {name}" in created[0] or re.search(rf"\b{name}\b", created[0])), created

    assert json.loads(cmd) == ["workflow-manager", "serve"]
    assert json.loads(entrypoint) == ["/app/deploy/docker-entrypoint.sh"]

    exposed = [args for k, args in instructions if k == "EXPOSE"]
    assert exposed == [str(Config().port)] == ["8080"]
    env = _env(instructions)
    assert env["WFM_PORT"] == "8080"
    # Serving several processes needs the DynamoDB store (Config.serving_processes).
    assert env["WFM_BACKEND"] == "aws" and env["WFM_STORE"] == "dynamodb" and int(env["WFM_WORKERS"]) >= 1

    healthcheck = _last(instructions, "HEALTHCHECK")[1]
    assert "/_ready" in healthcheck and "WFM_PORT" in healthcheck
    assert re.search(r"--timeout=(\d+)s", healthcheck)


def test_dockerfile_installs_the_project_and_keeps_the_files_the_command_line_looks_for():
    instructions = dockerfile_instructions()
    assert any(k == "RUN" and re.search(r"\bpip install \.(\s|$)", args) for k, args in instructions)
    workdir = Path(_last(instructions, "WORKDIR")[1])
    env = _env(instructions)
    # The package imported is the source in WORKDIR, so PROJECT_ROOT there is WORKDIR.
    assert env["PYTHONPATH"] == str(workdir)
    copied = {}
    for keyword, arguments in instructions:
        if keyword == "COPY":
            *sources, destination = shlex.split(arguments)
            for source in sources:
                copied[source] = destination
    needed = [
        cli.GUNICORN_CONFIG.relative_to(PROJECT_ROOT),
        Path("swagger.yml"),
        ENTRYPOINT.relative_to(ROOT),
        Path("pyproject.toml"),
        *(Path(package) for package in ("workflow_manager", "executor", "store")),
    ]
    for path in needed:
        assert (ROOT / path).exists(), path
        assert str(path) in copied, f"{path} is not copied into the image"
        destination = copied[str(path)]
        # Copied either to its own relative path or into its parent directory.
        assert os.path.normpath(destination) in (str(path), os.path.normpath(path.parent)), (
            path,
            destination,
        )
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in needed:
        assert not any(Path(path).match(pattern) or str(path) == pattern for pattern in ignored), path
    assert ".git" in ignored and ".venv" in ignored


def test_entrypoint_writes_the_tokens_secret_to_the_tokens_file_and_drops_it_from_the_environment(tmp_path):
    tokens_file = tmp_path / "tokens.yml"
    tokens = "tokens:\n  - name: ci\n    sha256: abc\n    roles: [reader]"
    environ = {
        "PATH": os.environ["PATH"],
        "WFM_AUTH_TOKENS": tokens,
        "WFM_AUTH_TOKENS_FILE": str(tokens_file),
    }
    shown = subprocess.run(
        ["sh", str(ENTRYPOINT), "sh", "-c", 'cat "$WFM_AUTH_TOKENS_FILE"; echo "[${WFM_AUTH_TOKENS-unset}]"'],
        env=environ,
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    assert shown == tokens + "\n[unset]\n"
    assert oct(tokens_file.stat().st_mode & 0o777) == "0o600"
    # Without the secret, the command runs with the environment as it was.
    shown = subprocess.run(
        ["sh", str(ENTRYPOINT), "sh", "-c", 'echo "[${WFM_AUTH_TOKENS_FILE-unset}]"'],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    assert shown == "[unset]\n"


# The templates


def load_template(path: Path) -> dict[str, Any]:
    # The templates use the long forms of the intrinsic functions ({"Fn::Sub": ...}), so plain YAML reads them.
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_cfn_lint_finds_nothing_in_the_template(template):
    matches = lint_file(template, config=ManualArgs(regions=[REGION]))
    assert [str(m) for m in matches] == []


def test_every_template_in_deploy_is_linted():
    # A template named otherwise would escape the lint.
    assert {p.name for p in DEPLOY.glob("*.y*ml")} == {p.name for p in TEMPLATES}
    assert SERVICE_TEMPLATE in TEMPLATES and TABLES_TEMPLATE in TEMPLATES


def _statements(policy_document: dict[str, Any]) -> list[dict[str, Any]]:
    """The statements of a template's policy, with the Batch ones (behind `Fn::If: [HasBatch, ...]`)."""
    statements = []
    for statement in policy_document["Statement"]:
        if "Fn::If" in statement:
            condition, when_true, _ = statement["Fn::If"]
            assert condition == "HasBatch"
            statement = when_true
        statements.append(statement)
    return statements


def _actions(statements: list[dict[str, Any]]) -> set[str]:
    found = set()
    for statement in statements:
        assert statement["Effect"] == "Allow"
        actions = statement["Action"]
        found.update([actions] if isinstance(actions, str) else actions)
    return found


def _role_statements(template: dict[str, Any], logical_id: str) -> list[dict[str, Any]]:
    resource = template["Resources"][logical_id]
    if resource["Type"] == "AWS::IAM::ManagedPolicy":
        return _statements(resource["Properties"]["PolicyDocument"])
    return [s for p in resource["Properties"]["Policies"] for s in _statements(p["PolicyDocument"])]


def _api_names(service: str) -> dict[str, str]:
    client = boto3.client(service, region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    return client.meta.method_to_api_mapping


def aws_calls(files: list[Path]) -> dict[str, set[str]]:
    """IAM action -> the files that call it, from a scan of `files` (see the module docstring)."""
    calls: dict[str, set[str]] = {}
    api = {service: _api_names(service) for service in set(CLIENT_NAMES.values())}

    def add(action: str, path: Path) -> None:
        action = IAM_ACTION_OF_API.get(action, action)
        calls.setdefault(action, set()).add(str(path.relative_to(ROOT)))

    for path in files:
        text = path.read_text()
        relative = str(path.relative_to(ROOT))
        names = {**CLIENT_NAMES, **FILE_CLIENT_NAMES.get(relative, {})}
        for name, service in names.items():
            for op in re.findall(rf"\b(?:self\.)?{re.escape(name)}\.([a-z_]+)\(", text):
                if op in api[service]:
                    add(f"{IAM_PREFIX[service]}:{api[service][op]}", path)
            for op in re.findall(rf"\b(?:self\.)?{re.escape(name)}\.get_paginator\(\"([a-z_]+)\"\)", text):
                add(f"{IAM_PREFIX[service]}:{api[service][op]}", path)
        for service, op in re.findall(r"\.client\(\"([a-z]+)\"\)\.([a-z_]+)\(", text):
            add(f"{service}:{_api_names(service)[op]}", path)
        if path.is_relative_to(ROOT / "store" / "dynamodb"):
            for method in re.findall(r"\.([a-z_]+)\b", text):
                if method in PYNAMODB_ACTIONS:
                    add(f"dynamodb:{PYNAMODB_ACTIONS[method]}", path)
    return calls


def test_the_scan_finds_the_calls_it_is_meant_to_find():
    calls = aws_calls(SERVICE_FILES)
    # One of each kind, so that a scan that silently found nothing fails here.
    for action in (
        "states:StartExecution",  # self._sfn.<op>(
        "batch:SubmitJob",  # self._submitter.<op>(
        "batch:ListJobs",  # get_paginator("list_jobs")
        "dynamodb:BatchGetItem",  # self._dynamodb.<op>( (BatchResultsTable)
        "dynamodb:BatchWriteItem",  # pynamodb's connection
        "dynamodb:Query",  # pynamodb's Model.query
        "sts:GetCallerIdentity",  # clients.client("sts").<op>(
        "sqs:ReceiveMessage",  # self._sqs.<op>( (the events queue)
        "sqs:DeleteMessage",  # DeleteMessageBatch, under its IAM name
    ):
        assert action in calls, action


def test_the_task_role_allows_every_aws_operation_the_service_calls():
    template = load_template(SERVICE_TEMPLATE)
    granted = _actions(_role_statements(template, "TaskRole"))
    calls = aws_calls(SERVICE_FILES)
    missing = {action: sorted(files) for action, files in calls.items() if action not in granted}
    for action in SERVICE_CALLS_NOT_GRANTED:
        missing.pop(action, None)
    assert missing == {}, "the task role does not allow these calls of the code"
    # Calls the code makes implicitly: CreateStateMachine and SubmitJob with tags.
    assert {"states:TagResource", "batch:TagResource", "iam:PassRole"} <= granted
    # And nothing it does not call.
    implicit = {"states:TagResource", "batch:TagResource", "iam:PassRole"}
    assert granted - implicit == set(calls) - set(SERVICE_CALLS_NOT_GRANTED)


def test_calls_left_out_of_the_task_role_are_never_made_by_the_stack():
    template = load_template(SERVICE_TEMPLATE)
    environment = _container_environment(template)
    assert environment["WFM_DYNAMODB_CREATE_TABLES"] == "false"
    assert environment["WFM_AWS_ACCOUNT_ID"] == {"Ref": "AWS::AccountId"}
    # ensure_table is called by the embedded emulator's seeding only.
    callers = [
        str(p.relative_to(ROOT))
        for p in SERVICE_FILES
        if "ensure_table(" in p.read_text() and p.name != "batch_results.py"
    ]
    assert callers == []
    assert "ensure_table(" in (ROOT / "workflow_manager" / "emulator" / "seeding.py").read_text()
    # DynamoDbStore.create_tables: in the service, only when WFM_DYNAMODB_CREATE_TABLES says so;
    # otherwise `workflow-manager init-tables`, an operator's command with the operator's credentials.
    wiring = (ROOT / "workflow_manager" / "wiring.py").read_text()
    assert wiring.count("create_tables(") == 1
    assert re.search(r"if config\.creates_tables:\n\s+created = store\.create_tables\(\)", wiring)


def test_the_activity_worker_and_batch_job_policies_allow_what_those_processes_call():
    template = load_template(SERVICE_TEMPLATE)
    worker = _actions(_role_statements(template, "ActivityWorkerPolicy"))
    assert set(aws_calls(ACTIVITY_WORKER_FILES)) == worker
    api = _api_names("dynamodb")
    job_side = {
        f"dynamodb:{api[op]}"
        for method in (BatchResultsTable.publish, BatchResultsTable.outputs)
        for op in re.findall(r"self\._dynamodb\.([a-z_]+)\(", inspect.getsource(method))
    }
    assert (
        job_side
        == _actions(_role_statements(template, "BatchJobResultsPolicy"))
        == {
            "dynamodb:PutItem",
            "dynamodb:BatchGetItem",
        }
    )


def _resources(statement: dict[str, Any]) -> list[Any]:
    resource = statement["Resource"]
    if isinstance(resource, dict) and "Fn::Split" in resource:
        return resource["Fn::Split"][1]["Fn::Join"][1]
    return resource if isinstance(resource, list) else [resource]


def test_the_roles_are_scoped_to_the_services_names_where_aws_allows():
    template = load_template(SERVICE_TEMPLATE)
    for logical_id in ("TaskRole", "StepFunctionsRole", "ActivityWorkerPolicy", "BatchJobResultsPolicy"):
        for statement in _role_statements(template, logical_id):
            actions = statement["Action"]
            actions = [actions] if isinstance(actions, str) else actions
            for resource in _resources(statement):
                if resource == "*":
                    assert set(actions) <= NO_RESOURCE_LEVEL, (logical_id, actions)
                    continue
                text = json.dumps(resource)
                if any(a.startswith(("states:", "lambda:", "glue:")) for a in actions):
                    assert re.search(r"[:/]\$\{Namespace\}\*", text), (logical_id, actions, text)
                if any(a.startswith("dynamodb:") for a in actions):
                    assert "table/${Prefix}-" in text or "BatchResultsTable" in text, (logical_id, text)
    pass_role = next(s for s in _role_statements(template, "TaskRole") if s["Action"] == "iam:PassRole")
    assert pass_role["Resource"] == {"Fn::GetAtt": ["StepFunctionsRole", "Arn"]}
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "states.amazonaws.com"}}


def _container_environment(template: dict[str, Any]) -> dict[str, Any]:
    container = template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    environment = {}
    for entry in container["Environment"]:
        if "Fn::If" in entry:
            entry = entry["Fn::If"][1]
        environment[entry["Name"]] = entry["Value"]
    return environment


def test_the_task_definition_sets_the_services_variables_by_their_names_in_config():
    template = load_template(SERVICE_TEMPLATE)
    environment = _container_environment(template)
    known = {variable for _, variables, _ in _ENVIRONMENT for variable in variables}
    # WFM_EVENTS_QUEUE_URL: the events queue's reader, another change, adds it to config.py.
    unknown = {name for name in environment if name not in known} - {"WFM_EVENTS_QUEUE_URL"}
    assert unknown == set()
    assert environment["WFM_BACKEND"] == "aws" and environment["WFM_STORE"] == "dynamodb"
    assert environment["WFM_DYNAMODB_PREFIX"] == {"Ref": "Prefix"}
    assert environment["WFM_SFN_ROLE_ARN"] == {"Fn::GetAtt": ["StepFunctionsRole", "Arn"]}
    assert environment["WFM_EVENTS_QUEUE_URL"] == {"Ref": "EventsQueue"}
    assert environment["WFM_BATCH_DEFAULT_QUEUE"] == {"Fn::Select": [0, {"Ref": "BatchJobQueueArns"}]}
    container = template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    # The tokens come from the secret, which the entry point writes to WFM_AUTH_TOKENS_FILE.
    assert container["Secrets"] == [{"Name": "WFM_AUTH_TOKENS", "ValueFrom": {"Ref": "TokensSecretArn"}}]
    assert "WFM_AUTH_TOKENS" in ENTRYPOINT.read_text()
    assert environment["WFM_AUTH_TOKENS_FILE"].startswith("/var/lib/workflow-manager/")
    assert "/var/lib/workflow-manager" in DOCKERFILE.read_text()
    assert container["PortMappings"] == [{"ContainerPort": 8080, "Protocol": "tcp"}]


def test_the_resources_moto_cannot_create_are_declared_as_the_readme_says():
    """AWS::SQS::QueuePolicy and AWS::CloudWatch::Alarm: moto's CloudFormation skips them."""
    resources = load_template(SERVICE_TEMPLATE)["Resources"]
    policy = resources["EventsQueuePolicy"]["Properties"]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert policy["Queues"] == [{"Ref": "EventsQueue"}]
    sources = statement["Condition"]["ArnEquals"]["aws:SourceArn"]
    assert sources[0] == {"Fn::GetAtt": ["StepFunctionsStatusRule", "Arn"]}
    assert sources[1]["Fn::If"][1] == {"Fn::GetAtt": ["BatchJobStateRule", "Arn"]}

    alarms = {k: r["Properties"] for k, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    dead_letters = alarms["DeadLetterQueueAlarm"]
    assert dead_letters["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["EventsDeadLetterQueue", "QueueName"]}
    assert (dead_letters["Threshold"], dead_letters["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    server_errors = {m["Id"]: m for m in alarms["ServerErrorRateAlarm"]["Metrics"]}
    assert server_errors["target"]["MetricStat"]["Metric"]["MetricName"] == "HTTPCode_Target_5XX_Count"
    assert server_errors["requests"]["MetricStat"]["Metric"]["MetricName"] == "RequestCount"
    lag = alarms["StatusLagAlarm"]
    assert (lag["Namespace"], lag["MetricName"]) == ("WorkflowManager", "StatusLagSeconds")
    assert "EventsBacklogAlarm" in alarms


# moto's CloudFormation


@pytest.fixture(scope="module")
def moto_server():
    """A moto server in a process of its own: moto's backends are process-wide, and the embedded
    emulator of the other tests (in the same pytest process) lives in them; mock_aws in-process
    would reset them under it."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
        except OSError:
            assert process.poll() is None, "the moto server exited"
            return False
        return True

    try:
        wait_for(answers, timeout=60, what="the moto server")
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def deployed(moto_server):
    """Both stacks in the moto server (reset first), the service's with Batch; yields the AWS clients.
    moto logs a warning for each resource of a type it does not support (see the module docstring)."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST"), timeout=10)
    clients: dict[str, Any] = {
        name: boto3.client(
            name,
            region_name=REGION,
            endpoint_url=moto_server,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        for name in ("cloudformation", "ec2", "dynamodb", "sqs", "events", "iam", "ecs", "elbv2")
    }
    ec2 = clients["ec2"]
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{REGION}{zone}")[
            "Subnet"
        ]["SubnetId"]
        for i, zone in enumerate("ab")
    ]
    cloudformation = clients["cloudformation"]
    cloudformation.create_stack(
        StackName="wfm-tables",
        TemplateBody=TABLES_TEMPLATE.read_text(),
        Parameters=[{"ParameterKey": "Prefix", "ParameterValue": "wfm"}],
    )
    parameters = {
        "Prefix": "wfm",
        "Namespace": "prod",
        "Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/workflow-manager:1",
        "VpcId": vpc,
        "SubnetIds": ",".join(subnets),
        "LoadBalancerSubnetIds": ",".join(subnets),
        "TokensSecretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:wfm-tokens",
        "BatchJobQueueArns": QUEUE_ARN,
    }
    clients["service_parameters"] = parameters
    _create_service_stack(cloudformation, "wfm", parameters)
    yield clients


def _create_service_stack(cloudformation: Any, name: str, parameters: dict[str, str]) -> None:
    cloudformation.create_stack(
        StackName=name,
        TemplateBody=SERVICE_TEMPLATE.read_text(),
        Capabilities=["CAPABILITY_NAMED_IAM"],
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
    )


def test_the_stacks_deploy_in_moto_with_their_tables_queues_rules_roles_and_service(deployed):
    cloudformation = deployed["cloudformation"]
    for stack in ("wfm-tables", "wfm"):
        assert (
            cloudformation.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
        )
    outputs = {
        o["OutputKey"]: o["OutputValue"]
        for o in cloudformation.describe_stacks(StackName="wfm")["Stacks"][0]["Outputs"]
    }

    tables = set(deployed["dynamodb"].list_tables()["TableNames"])
    assert tables == {
        "wfm-workflow-definitions",
        "wfm-latest-workflow-definitions",
        "wfm-workflows",
        "wfm-workflow-jobs",
        "wfm-state-resources",
        "wfm-batch-results",
    }
    assert outputs["BatchResultsTableName"] == "wfm-batch-results"

    sqs = deployed["sqs"]
    queue_url = outputs["EventsQueueUrl"]
    assert queue_url.endswith("/wfm-aws-events")
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    dead_letters = sqs.get_queue_attributes(
        QueueUrl=outputs["EventsDeadLetterQueueUrl"], AttributeNames=["QueueArn"]
    )
    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": dead_letters["Attributes"]["QueueArn"],
        "maxReceiveCount": 5,
    }

    events = deployed["events"]
    rules = {rule["Name"]: rule for rule in events.list_rules()["Rules"]}
    assert set(rules) == {"wfm-sfn-status", "wfm-batch-status"}
    assert json.loads(rules["wfm-sfn-status"]["EventPattern"]) == {
        "source": ["aws.states"],
        "detail-type": ["Step Functions Execution Status Change"],
        "detail": {"stateMachineArn": [{"prefix": f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:prod"}]},
    }
    assert json.loads(rules["wfm-batch-status"]["EventPattern"])["detail"] == {"jobQueue": [QUEUE_ARN]}
    for name in rules:
        (target,) = events.list_targets_by_rule(Rule=name)["Targets"]
        assert target["Arn"] == attributes["QueueArn"]

    iam = deployed["iam"]
    task_role = iam.get_role(RoleName="wfm-task")["Role"]
    assert json.loads(json.dumps(task_role["AssumeRolePolicyDocument"]))["Statement"][0]["Principal"] == {
        "Service": "ecs-tasks.amazonaws.com"
    }
    policy = iam.get_role_policy(RoleName="wfm-task", PolicyName="workflow-manager")["PolicyDocument"]
    # moto 5.2.5 keeps a CloudFormation role's inline policy as the Python repr of the document.
    policy = ast.literal_eval(policy) if isinstance(policy, str) else policy
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert by_sid["StateMachines"]["Resource"] == [f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:prod*"]
    assert by_sid["BatchSubmit"]["Resource"] == [
        QUEUE_ARN,
        f"arn:aws:batch:{REGION}:{ACCOUNT}:job-definition/*",
    ]
    assert outputs["StepFunctionsRoleArn"] == iam.get_role(RoleName="wfm-sfn")["Role"]["Arn"]

    ecs = deployed["ecs"]
    (service,) = ecs.describe_services(cluster="wfm", services=["wfm"])["services"]
    # moto's CloudFormation ignores the service's LaunchType (it reports EC2): read it from the template.
    assert service["desiredCount"] == 2
    resources = load_template(SERVICE_TEMPLATE)["Resources"]
    assert resources["Service"]["Properties"]["LaunchType"] == "FARGATE"
    assert resources["TaskDefinition"]["Properties"]["RequiresCompatibilities"] == ["FARGATE"]
    definition = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]
    environment = {e["name"]: e["value"] for e in definition["containerDefinitions"][0]["environment"]}
    assert environment["WFM_EVENTS_QUEUE_URL"] == queue_url
    assert environment["WFM_SFN_ROLE_ARN"] == outputs["StepFunctionsRoleArn"]
    assert environment["WFM_BATCH_DEFAULT_QUEUE"] == QUEUE_ARN
    assert environment["WFM_NAMESPACE"] == "prod" and environment["WFM_DYNAMODB_PREFIX"] == "wfm"
    assert definition["containerDefinitions"][0]["image"].endswith("/workflow-manager:1")
    # moto's CloudFormation drops the task definition's TaskRoleArn: read it from the template.
    task_definition = resources["TaskDefinition"]["Properties"]
    assert task_definition["TaskRoleArn"] == {"Fn::GetAtt": ["TaskRole", "Arn"]}

    (target_group,) = deployed["elbv2"].describe_target_groups(Names=["wfm"])["TargetGroups"]
    assert (target_group["HealthCheckPath"], target_group["Port"], target_group["TargetType"]) == (
        "/_ready",
        8080,
        "ip",
    )


def _execution_event(state_machine: str) -> dict[str, Any]:
    arn = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{state_machine}"
    return {
        "Source": "aws.states",
        "DetailType": "Step Functions Execution Status Change",
        "Detail": json.dumps({"stateMachineArn": arn, "status": "SUCCEEDED", "executionArn": arn + ":x"}),
    }


def test_the_services_events_reach_the_queue_and_others_do_not(deployed):
    """moto delivers to the rule's SQS target without checking the queue policy (which it skips)."""
    events, sqs = deployed["events"], deployed["sqs"]
    queue_url = sqs.get_queue_url(QueueName="wfm-aws-events")["QueueUrl"]
    batch_event = {
        "Source": "aws.batch",
        "DetailType": "Batch Job State Change",
        "Detail": json.dumps({"jobQueue": QUEUE_ARN, "status": "SUCCEEDED", "jobId": "j-1"}),
    }
    other_queue = {
        **batch_event,
        "Detail": json.dumps({"jobQueue": QUEUE_ARN + "-other", "status": "FAILED"}),
    }
    entries = [
        _execution_event("prod--hello--1--Start"),
        _execution_event("staging--hello--1--Start"),
        batch_event,
        other_queue,
    ]
    assert events.put_events(Entries=entries)["FailedEntryCount"] == 0

    received = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
            "Messages", []
        )
        if not messages:
            break
        received.extend(json.loads(m["Body"]) for m in messages)
    details = sorted((e["source"], json.dumps(e["detail"], sort_keys=True)) for e in received)
    assert details == sorted(
        (entry["Source"], json.dumps(json.loads(entry["Detail"]), sort_keys=True))
        for entry in (entries[0], entries[2])
    )


def test_the_service_template_names_its_tables_as_the_store_does():
    """The role's table prefix and the results table are the store's names (tables.py, batch_results.py)."""
    from executor.batch_results import results_table_name
    from store.dynamodb.tables import define_tables

    template = load_template(SERVICE_TEMPLATE)
    results = template["Resources"]["BatchResultsTable"]["Properties"]
    assert results["TableName"] == {"Fn::Sub": results_table_name("${Prefix}")}
    tables = define_tables("${Prefix}", {})
    assert all(model.Meta.table_name.startswith("${Prefix}-") for model in tables.all())
    assert results["KeySchema"] == [{"AttributeName": "JobId", "KeyType": "HASH"}]
    assert results["TimeToLiveSpecification"]["AttributeName"] == "ExpiresAt"


def test_without_batch_job_queues_the_stack_has_no_batch_rule_permission_or_variable(deployed):
    parameters = {**deployed["service_parameters"], "Prefix": "nobatch"}
    del parameters["BatchJobQueueArns"]
    _create_service_stack(deployed["cloudformation"], "nobatch", parameters)
    stack = deployed["cloudformation"].describe_stacks(StackName="nobatch")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"

    rules = {rule["Name"] for rule in deployed["events"].list_rules(NamePrefix="nobatch-")["Rules"]}
    assert rules == {"nobatch-sfn-status"}
    policy = deployed["iam"].get_role_policy(RoleName="nobatch-task", PolicyName="workflow-manager")[
        "PolicyDocument"
    ]
    policy = ast.literal_eval(policy) if isinstance(policy, str) else policy  # moto's repr, as above
    actions = {
        a
        # moto leaves AWS::NoValue in a list as null where CloudFormation drops the element.
        for s in policy["Statement"]
        if s is not None
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert actions and not any(a.startswith("batch:") for a in actions)
    (service,) = deployed["ecs"].describe_services(cluster="nobatch", services=["nobatch"])["services"]
    definition = deployed["ecs"].describe_task_definition(taskDefinition=service["taskDefinition"])[
        "taskDefinition"
    ]
    names = {
        e["name"] for e in definition["containerDefinitions"][0]["environment"] if e is not None
    }  # as above
    # Without WFM_BATCH_DEFAULT_QUEUE the Batch executor is off (Config.from_env).
    assert "WFM_EVENTS_QUEUE_URL" in names and not names & {
        "WFM_BATCH_DEFAULT_QUEUE",
        "WFM_BATCH_CUSTOM_QUEUES",
    }
