"""Who may do what (CONTRACT 9.1), over real HTTP against a served app with a tokens file, on the
session's emulator: every operation of swagger.yml with no token, an unknown token and each role
gets the status the roles table (workflow_manager/domain/access.py) says, and a refused request
changes nothing. Also: namespaces, the 401's header, the audit log, the tokens file and the
start-up refusal outside embedded mode."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import requests
import yaml

from tests.conftest import FIXTURES, Api, app_config, beside_config, free_port, load_fixture, serve, wait_for
from workflow_manager.api.spec import SPEC_PATH
from workflow_manager.domain.access import OPERATION_PERMISSIONS, Principal, Role

TOKENS_FILE = FIXTURES / "auth" / "tokens.yml"
TOKENS = {
    "reader": "reader-secret",
    "operator": "operator-secret",
    "author": "author-secret",
    "admin": "admin-secret",
}
NAMESPACE = "auth-tests"


def spec_operations() -> list[tuple[str, str, str]]:
    """(operationId, method, path template) of every operation swagger.yml declares."""
    paths = yaml.safe_load(SPEC_PATH.read_text())["paths"]
    return [
        (operation["operationId"], method.upper(), template)
        for template, operations in paths.items()
        for method, operation in operations.items()
        if isinstance(operation, dict) and "operationId" in operation
    ]


OPERATIONS = spec_operations()


class TokenApi(Api):
    def __init__(self, base_url: str, token: str | None):
        super().__init__(base_url)
        if token is not None:
            self.session.headers["Authorization"] = f"Bearer {token}"


@pytest.fixture(scope="module")
def auth_app(served_app):
    config = beside_config(
        served_app,
        auth_tokens_file=TOKENS_FILE,
        start_workers=False,
        default_namespace=NAMESPACE,
    )
    served = serve(config)
    yield served
    served.stop()


@pytest.fixture(scope="module")
def base_url(auth_app) -> str:
    return f"http://127.0.0.1:{auth_app.port}"


@pytest.fixture(scope="module")
def admin(base_url) -> TokenApi:
    return TokenApi(base_url, TOKENS["admin"])


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def new_definition(admin: Api, fixture: str = "quick.json") -> str:
    body = load_fixture("auth", fixture)
    body["name"] = unique("auth")
    response = admin.post("/workflow-definitions", body)
    assert response.status_code == 201, response.text
    return body["name"]


def new_workflow(admin: Api, fixture: str = "quick.json", namespace: str | None = None) -> str:
    body: dict = {"workflowDefinition": {"name": new_definition(admin, fixture)}}
    if namespace:
        body["namespace"] = namespace
    response = admin.post("/workflows", body)
    assert response.status_code == 200, response.text
    return response.json()["id"]


def new_state_resource(admin: Api) -> str:
    name = unique("res")
    response = admin.post(
        "/state-resources",
        {"name": name, "namespace": NAMESPACE, "uri": "arn:aws:states:us-east-1:123456789012:activity:x"},
    )
    assert response.status_code == 201, response.text
    return name


@dataclass
class Call:
    """One request an operation is tested with, the status it gets when allowed, and a check that
    it changed nothing (run after a refusal)."""

    method: str
    path: str
    body: object = None
    success: int = 200
    unchanged: Callable[[], None] = lambda: None


def _status_is(admin: Api, path: str, status: int) -> Callable[[], None]:
    def check() -> None:
        assert admin.get(path).status_code == status

    return check


def _workflow_field_is(admin: Api, workflow_id: str, field: str, value) -> Callable[[], None]:
    def check() -> None:
        assert admin.get(f"/workflows/{workflow_id}").json().get(field) == value

    return check


def _no_workflows_of(admin: Api, name: str) -> Callable[[], None]:
    def check() -> None:
        assert admin.get(f"/workflows?workflowDefinitionName={name}").json() == []

    return check


def call_for(operation_id: str, admin: Api) -> Call:
    """A request for the operation that succeeds when the caller may make it: fresh entities made
    with the admin token, so that every caller's request has the same chance."""
    if operation_id == "healthCheck":
        return Call("GET", "/_health")
    if operation_id == "liveCheck":
        return Call("GET", "/_live")
    if operation_id == "readyCheck":
        return Call("GET", "/_ready")
    if operation_id == "getMetrics":
        return Call("GET", "/metrics")
    if operation_id == "getWorkflowDefinitions":
        return Call("GET", "/workflow-definitions")
    if operation_id == "newWorkflowDefinition":
        body = {**load_fixture("auth", "quick.json"), "name": unique("auth-new")}
        return Call(
            "POST",
            "/workflow-definitions",
            body,
            201,
            _status_is(admin, f"/workflow-definitions/{body['name']}", 404),
        )
    if operation_id == "getWorkflowDefinitionVersionsByName":
        return Call("GET", f"/workflow-definitions/{new_definition(admin)}")
    if operation_id == "updateWorkflowDefinition":
        name = new_definition(admin)
        body = {**load_fixture("auth", "quick.json"), "name": name}
        return Call(
            "PUT",
            f"/workflow-definitions/{name}",
            body,
            201,
            _status_is(admin, f"/workflow-definitions/{name}/1", 404),
        )
    if operation_id == "getWorkflowDefinitionByNameAndVersion":
        return Call("GET", f"/workflow-definitions/{new_definition(admin)}/0")
    if operation_id in ("startWorkflow", "startJob"):
        name = new_definition(admin)
        path = "/workflows" if operation_id == "startWorkflow" else "/jobs"
        return Call("POST", path, {"workflowDefinition": {"name": name}}, 200, _no_workflows_of(admin, name))
    if operation_id == "getWorkflows":
        return Call("GET", f"/workflows?workflowDefinitionName={new_definition(admin)}")
    if operation_id == "getWorkflowByID":
        return Call("GET", f"/workflows/{new_workflow(admin)}")
    if operation_id == "CancelWorkflow":
        workflow_id = new_workflow(admin, "waiting.json")
        return Call(
            "DELETE",
            f"/workflows/{workflow_id}",
            {"reason": "auth test"},
            200,
            _workflow_field_is(admin, workflow_id, "resolvedByUser", False),
        )
    if operation_id == "resumeWorkflowByID":
        workflow_id = new_workflow(admin)
        admin.wait_for_status(workflow_id, {"succeeded"})
        return Call(
            "POST",
            f"/workflows/{workflow_id}",
            {"StartAt": "done"},
            200,
            _workflow_field_is(admin, workflow_id, "retries", []),
        )
    if operation_id == "resolveWorkflowByID":
        # A waiting workflow: a succeeded one is resolved already.
        workflow_id = new_workflow(admin, "waiting.json")
        return Call(
            "POST",
            f"/workflows/{workflow_id}/resolved",
            None,
            201,
            _workflow_field_is(admin, workflow_id, "resolvedByUser", False),
        )
    if operation_id == "postStateResource":
        name = unique("res-new")
        body = {
            "name": name,
            "namespace": NAMESPACE,
            "uri": "arn:aws:states:us-east-1:123456789012:activity:x",
        }
        return Call(
            "POST",
            "/state-resources",
            body,
            201,
            _status_is(admin, f"/state-resources/{NAMESPACE}/{name}", 404),
        )
    if operation_id == "getStateResource":
        return Call("GET", f"/state-resources/{NAMESPACE}/{new_state_resource(admin)}")
    if operation_id == "putStateResource":
        name = unique("res-put")
        body = {
            "name": name,
            "namespace": NAMESPACE,
            "uri": "arn:aws:lambda:us-east-1:123456789012:function:f",
        }
        path = f"/state-resources/{NAMESPACE}/{name}"
        return Call("PUT", path, body, 201, _status_is(admin, path, 404))
    if operation_id == "deleteStateResource":
        path = f"/state-resources/{NAMESPACE}/{new_state_resource(admin)}"
        return Call("DELETE", path, None, 200, _status_is(admin, path, 200))
    raise AssertionError(f"{operation_id} has no request in tests/test_auth.py: add one")


CALLERS = [None, "unknown", *TOKENS]


def expected_status(operation_id: str, caller: str | None, success: int) -> int:
    needed = OPERATION_PERMISSIONS[operation_id]
    if needed is None:
        return success
    if caller not in TOKENS:
        return 401
    return success if Principal(caller, frozenset({Role(caller)})).may(operation_id) else 403


def test_every_operation_of_the_spec_is_in_the_roles_table():
    declared = {operation_id for operation_id, _, _ in OPERATIONS}
    assert declared - set(OPERATION_PERMISSIONS) == set(), "operations without a roles-table entry"
    assert set(OPERATION_PERMISSIONS) - declared == set(), "roles-table entries for no operation"


@pytest.mark.parametrize("caller", CALLERS, ids=lambda c: c or "no-token")
@pytest.mark.parametrize(("operation_id", "method", "template"), OPERATIONS, ids=[o[0] for o in OPERATIONS])
def test_each_caller_gets_the_status_the_roles_table_says(
    operation_id, method, template, caller, admin, base_url
):
    call = call_for(operation_id, admin)
    assert call.method == method
    token = TOKENS.get(caller, "not-a-known-token") if caller else None
    response = TokenApi(base_url, token).request(
        call.method, call.path, **({"json": call.body} if call.body is not None else {})
    )
    expected = expected_status(operation_id, caller, call.success)
    assert response.status_code == expected, (caller, call.path, response.text)
    if expected in (401, 403):
        assert response.headers["Content-Type"].startswith("application/json")
        assert isinstance(response.json()["message"], str) and response.json()["message"]
        call.unchanged()
    if expected == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_a_refusal_comes_before_validation(base_url):
    # A reader who sends an invalid definition learns only that it may not create one.
    response = TokenApi(base_url, TOKENS["reader"]).post("/workflow-definitions", {"name": 5})
    assert response.status_code == 403, response.text
    assert response.json()["message"] == (
        "token 'the-reader' may not call newWorkflowDefinition: it needs one of the roles admin, author"
    )


def test_unknown_and_malformed_credentials_are_401_with_a_message(base_url):
    for header in ("Bearer nope", "Basic dXNlcjpwYXNz", "Bearer", "wfm_only"):
        response = requests.get(
            f"{base_url}/workflow-definitions", headers={"Authorization": header}, timeout=10
        )
        assert response.status_code == 401, (header, response.text)
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert response.json()["message"]
    assert requests.get(f"{base_url}/workflow-definitions", timeout=10).json() == {
        "message": "authentication required: send `Authorization: Bearer <token>`"
    }


def test_a_namespace_limited_operator_operates_only_in_its_namespaces(admin, base_url):
    team_a = TokenApi(base_url, "team-a-secret")
    name = new_definition(admin, "waiting.json")
    refused = team_a.post("/workflows", {"workflowDefinition": {"name": name}})
    assert refused.status_code == 403, refused.text
    assert "namespace 'auth-tests'" in refused.json()["message"]
    assert admin.get(f"/workflows?workflowDefinitionName={name}").json() == []

    started = team_a.post("/workflows", {"workflowDefinition": {"name": name}, "namespace": "team-a"})
    assert started.status_code == 200, started.text
    assert team_a.delete(f"/workflows/{started.json()['id']}", {"reason": "mine"}).status_code == 200

    elsewhere = new_workflow(admin, "waiting.json")
    assert team_a.delete(f"/workflows/{elsewhere}", {"reason": "not mine"}).status_code == 403
    assert team_a.post(f"/workflows/{elsewhere}/resolved").status_code == 403
    workflow = admin.get(f"/workflows/{elsewhere}").json()
    assert workflow["status"] in ("queued", "running") and workflow["resolvedByUser"] is False
    # Reading is not limited by namespace.
    assert team_a.get(f"/workflows/{elsewhere}").status_code == 200
    admin.delete(f"/workflows/{elsewhere}", {"reason": "cleanup"})


def test_every_change_is_audited_with_who_operation_target_and_outcome(admin, base_url, caplog):
    caplog.set_level(logging.INFO, logger="workflow_manager.audit")
    workflow_id = new_workflow(admin, "waiting.json")
    TokenApi(base_url, TOKENS["reader"]).delete(f"/workflows/{workflow_id}", {"reason": "no"})
    admin.delete(f"/workflows/{workflow_id}", {"reason": "yes"})
    requests.delete(f"{base_url}/workflows/{workflow_id}", json={"reason": "who?"}, timeout=10)

    def audit_records() -> list[dict]:
        records = [json.loads(r.getMessage()) for r in caplog.records if r.name == "workflow_manager.audit"]
        return [r for r in records if r.get("target") == workflow_id or r.get("created") == workflow_id]

    records = wait_for(lambda: len(audit_records()) >= 4 and audit_records(), 10, what="the audit lines")
    # Each line is written when its response is complete, so lines of requests in a row may swap.
    summary = sorted((r["who"], r["operation"], r["status"], r["outcome"]) for r in records)
    assert summary == sorted(
        [
            ("the-admin", "startWorkflow", 200, "ok"),
            ("the-reader", "CancelWorkflow", 403, "denied"),
            ("the-admin", "CancelWorkflow", 200, "ok"),
            ("unauthenticated", "CancelWorkflow", 401, "denied"),
        ]
    )
    assert [r["target"] for r in records if r["operation"] == "CancelWorkflow"] == [workflow_id] * 3
    # Tokens are never logged, whatever the level.
    for secret in (*TOKENS.values(), "not-a-known-token"):
        assert secret not in caplog.text


def test_reads_are_not_audited(admin, caplog):
    caplog.set_level(logging.INFO, logger="workflow_manager.audit")
    admin.get("/workflow-definitions")
    assert [r for r in caplog.records if r.name == "workflow_manager.audit"] == []


def test_health_is_open_without_a_token(base_url):
    assert requests.get(f"{base_url}/_health", timeout=30).status_code == 200


def test_the_tokens_file_is_read_again_when_it_changes(served_app, tmp_path, caplog):
    tokens = tmp_path / "tokens.yml"
    tokens.write_text("tokens:\n  - {name: first, token: first-secret, roles: [reader]}\n")
    served = serve(
        beside_config(
            served_app,
            auth_tokens_file=tokens,
            start_workers=False,
            updater_enabled=False,
        )
    )
    try:
        first, second = (
            TokenApi(f"http://127.0.0.1:{served.port}", t) for t in ("first-secret", "second-secret")
        )
        assert first.get("/workflow-definitions").status_code == 200
        assert second.get("/workflow-definitions").status_code == 401
        tokens.write_text("tokens:\n  - {name: second, token: second-secret, roles: [reader]}\n")
        wait_for(lambda: second.get("/workflow-definitions").status_code == 200, 10, 0.2, "the new token")
        assert first.get("/workflow-definitions").status_code == 401
        # A broken file keeps the tokens read before: every request until the reload has been tried
        # (and logged), and after, is still let in.
        caplog.set_level(logging.ERROR, logger="workflow_manager.api.tokens")
        tokens.write_text("tokens: [oops")
        statuses = []

        def reload_failed() -> bool:
            statuses.append(second.get("/workflow-definitions").status_code)
            return any("keeping the 1 tokens read before" in r.getMessage() for r in caplog.records)

        wait_for(reload_failed, 10, 0.2, "the failed reload")
        assert set(statuses) == {200}
    finally:
        served.stop()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("tokens: {}", "expected `tokens:` with a list of entries"),
        ("tokens:\n  - {token: x, roles: [reader]}", "`name` is required"),
        ("tokens:\n  - {name: a, roles: [reader]}", "give exactly one of `sha256` and `token`"),
        (
            "tokens:\n  - {name: a, sha256: abc, roles: [reader]}",
            "`sha256` must be 64 hexadecimal characters",
        ),
        ("tokens:\n  - {name: a, token: x, roles: [root]}", "unknown role 'root'"),
        ("tokens:\n  - {name: a, token: x, roles: []}", "`roles` must be a list of at least one role"),
        (
            "tokens:\n  - {name: a, token: x, roles: [reader]}\n  - {name: a, token: y, roles: [reader]}",
            "used twice",
        ),
        (
            "tokens:\n  - {name: a, token: x, roles: [reader]}\n  - {name: b, token: x, roles: [admin]}",
            "same token",
        ),
        ("tokens:\n  - {name: a, token: x, roles: [reader], namespaces: prd}", "`namespaces` must be a list"),
    ],
)
def test_a_malformed_tokens_file_is_refused_naming_the_entry(tmp_path, content, message):
    from workflow_manager.api.tokens import TokenFileError, load_tokens

    path = tmp_path / "tokens.yml"
    path.write_text(content)
    with pytest.raises(TokenFileError) as raised:
        load_tokens(path)
    assert message in str(raised.value) and str(path) in str(raised.value)


def _serve_command(env_overrides: dict[str, str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WFM_")}
    env.update({"WFM_PORT": str(free_port()), **env_overrides})
    return subprocess.run(
        [sys.executable, "-m", "workflow_manager.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_refuses_to_start_outside_embedded_mode_without_tokens():
    result = _serve_command({"WFM_BACKEND": "endpoint", "WFM_AWS_ENDPOINT": "http://127.0.0.1:9"})
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("serve:")]
    assert lines == [
        "serve: refusing to start: WFM_BACKEND=endpoint would serve without authentication; set"
        " WFM_AUTH_TOKENS_FILE to a tokens file (`workflow-manager token create NAME --role ROLE` makes"
        " entries) or WFM_AUTH=off to serve without authentication"
    ]


def test_serve_refuses_an_embedded_service_on_every_interface_without_tokens():
    result = _serve_command({"WFM_HOST": "0.0.0.0"})
    assert result.returncode == 2
    assert "the embedded service would listen on 0.0.0.0 without authentication" in result.stderr


def test_serve_refuses_a_malformed_tokens_file(tmp_path):
    tokens = tmp_path / "tokens.yml"
    tokens.write_text("tokens:\n  - {name: a, token: x, roles: [root]}\n")
    result = _serve_command({"WFM_AUTH_TOKENS_FILE": str(tokens)})
    assert result.returncode == 2
    assert f"serve: refusing to start: {tokens}: tokens[0] (a): unknown role 'root'" in result.stderr


def test_create_app_refuses_what_serve_refuses():
    from workflow_manager.app import StartupRefused, create_app

    config = app_config(backend="aws", auth=None)
    with pytest.raises(StartupRefused, match="WFM_BACKEND=aws would serve without authentication"):
        create_app(config)


def test_token_create_prints_a_token_once_and_an_entry_the_service_accepts(served_app, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "workflow_manager.cli", "token", "create", "ci-bot", "--role", "operator"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = result.stdout.splitlines()
    token = lines[1].strip()
    assert token.startswith("wfm_") and len(token) > 40
    entry = "\n".join(line[2:] for line in lines[3:])
    assert token not in entry
    parsed = yaml.safe_load(entry)
    assert parsed == [{"name": "ci-bot", "sha256": parsed[0]["sha256"], "roles": ["operator"]}]
    tokens = tmp_path / "tokens.yml"
    tokens.write_text("tokens:\n" + "\n".join("  " + line for line in entry.splitlines()) + "\n")
    served = serve(
        beside_config(
            served_app,
            auth_tokens_file=tokens,
            start_workers=False,
            updater_enabled=False,
        )
    )
    try:
        api = TokenApi(f"http://127.0.0.1:{served.port}", token)
        assert api.get("/workflow-definitions").status_code == 200
        assert api.post("/workflow-definitions", load_fixture("auth", "quick.json")).status_code == 403
    finally:
        served.stop()


def test_token_create_refuses_an_unknown_role():
    result = subprocess.run(
        [sys.executable, "-m", "workflow_manager.cli", "token", "create", "x", "--role", "root"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert "token create: unknown role 'root'" in result.stderr


def test_only_an_author_may_save_a_definition_that_runs_a_command(admin, base_url, tmp_path):
    # The example: a Batch submitJob whose command override would run on the host.
    proof = tmp_path / "proof"
    body = load_fixture("auth", "command-override.json")
    body["name"] = unique("auth-rce")
    body["stateMachine"]["States"]["run"]["Parameters"]["ContainerOverrides"]["Command"][2] = f"id > {proof}"
    for role in ("reader", "operator"):
        response = TokenApi(base_url, TOKENS[role]).post("/workflow-definitions", body)
        assert response.status_code == 403, (role, response.text)
    assert admin.get(f"/workflow-definitions/{body['name']}").status_code == 404
    assert not proof.exists()
    response = TokenApi(base_url, TOKENS["author"]).post("/workflow-definitions", body)
    assert response.status_code == 201, response.text
