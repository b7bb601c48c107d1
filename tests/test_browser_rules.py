"""The browser rules (CONTRACT 9.1) over real HTTP against the real app on the embedded emulator:
requests as a web page's browser sends them (an `Origin`, `Sec-Fetch-Site`, a form or text body
that needs no preflight, a rebound `Host`), each refused one checked to have changed nothing, and
the requests that must keep working (curl, the service's own pages, listed origins)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import requests

from tests.conftest import Api, app_config, load_fixture, serve, wait_for
from tests.test_api import TERMINAL, assert_error, post_definition, unique
from workflow_manager.api.browser import (
    CORS_ALLOW_HEADERS,
    CORS_ALLOW_METHODS,
    host_is_allowed,
    origin_is_allowed,
    origin_refusal,
    split_host,
)

FOREIGN_ORIGIN = "http://evil.example"
CONSOLE_ORIGIN = "http://console.example"
# What a page can send cross-origin without a preflight (a "simple" request): curl -d's type too.
FORM = "application/x-www-form-urlencoded"
SIMPLE_CONTENT_TYPES = (FORM, "text/plain")


def host_of(api: Api) -> str:
    return api.base_url.removeprefix("http://")


def port_of(api: Api) -> int:
    return int(api.base_url.rsplit(":", 1)[1])


def simple_post(
    api: Api, path: str, body: dict, content_type: str = FORM, **headers: str
) -> requests.Response:
    """A POST with a JSON text as a form or text body: what `curl -d` sends, and what a page's
    `fetch(url, {method: "POST", mode: "no-cors", body})` sends, with the browser's headers."""
    return api.request("POST", path, data=json.dumps(body), headers={"Content-Type": content_type, **headers})


def definition_body(fixture: str = "echo-chain.json") -> dict:
    body = load_fixture("api", fixture)
    body["name"] = unique(fixture.removesuffix(".json"))
    return body


def command_definition(marker: Path) -> dict:
    """The issue's attack: a definition whose Batch Task runs a command of the page's choosing
    (here: creating `marker`)."""
    body = definition_body("batch-command-override.json")
    body["stateMachine"]["States"]["run"]["Parameters"]["ContainerOverrides"]["Command"][2] = (
        f"touch {marker}"
    )
    return body


def start_body(name: str) -> dict:
    return {"workflowDefinition": {"name": name}, "input": ["a"]}


def workflows_of(api: Api, name: str) -> list:
    response = api.get(f"/workflows?workflowDefinitionName={name}")
    assert response.status_code == 200, response.text
    return response.json()


def assert_refused(response: requests.Response, *words: str) -> None:
    assert_error(response, 403)
    assert not any(h.lower().startswith("access-control-") for h in response.headers)
    for word in words:
        assert word in response.json()["message"]


# A web page's requests from another origin


@pytest.mark.parametrize("content_type", SIMPLE_CONTENT_TYPES)
def test_foreign_origin_simple_post_of_a_definition_is_403_and_saves_nothing(api, content_type):
    body = definition_body()
    response = simple_post(api, "/workflow-definitions", body, content_type, Origin=FOREIGN_ORIGIN)
    assert_refused(response, f"origin '{FOREIGN_ORIGIN}'")
    assert api.get(f"/workflow-definitions/{body['name']}").status_code == 404


@pytest.mark.parametrize("path", ["/jobs", "/jobs/", "/workflows"])
def test_foreign_origin_simple_post_of_a_start_is_403_and_starts_nothing(api, path):
    name = post_definition(api, "echo-chain.json")["name"]
    response = simple_post(api, path, start_body(name), Origin=FOREIGN_ORIGIN)
    assert_refused(response, f"origin '{FOREIGN_ORIGIN}'")
    assert workflows_of(api, name) == []


def test_foreign_origin_put_of_a_new_version_is_403_and_adds_none(api):
    definition = post_definition(api, "echo-chain.json")
    name = definition["name"]
    response = api.put(f"/workflow-definitions/{name}", definition_body(), headers={"Origin": FOREIGN_ORIGIN})
    assert_refused(response, f"origin '{FOREIGN_ORIGIN}'")
    assert api.get(f"/workflow-definitions/{name}?latest=false").json() == [definition]


def test_foreign_origin_cancel_is_403_and_the_workflow_goes_on(api):
    name = post_definition(api, "long-task.json")["name"]
    started = simple_post(api, "/workflows", {"workflowDefinition": {"name": name}, "input": {"seconds": 60}})
    assert started.status_code == 200, started.text
    workflow_id = started.json()["id"]
    cancel = api.delete(f"/workflows/{workflow_id}", {"reason": "page"}, headers={"Origin": FOREIGN_ORIGIN})
    assert_refused(cancel, f"origin '{FOREIGN_ORIGIN}'")
    assert api.get(f"/workflows/{workflow_id}").json()["status"] not in TERMINAL
    assert api.delete(f"/workflows/{workflow_id}", {"reason": "done testing"}).status_code == 200


def test_the_command_of_a_foreign_page_never_runs(api, tmp_path):
    marker = tmp_path / "ran"
    body = command_definition(marker)
    # The page cannot save the definition...
    refused = simple_post(api, "/workflow-definitions", body, "text/plain", Origin=FOREIGN_ORIGIN)
    assert_refused(refused)
    assert api.get(f"/workflow-definitions/{body['name']}").status_code == 404
    # ...nor start one that exists (here saved by curl, with no Origin).
    assert simple_post(api, "/workflow-definitions", body).status_code == 201
    refused = simple_post(api, "/jobs", start_body(body["name"]), Origin=FOREIGN_ORIGIN)
    assert_refused(refused)
    assert workflows_of(api, body["name"]) == []
    assert not marker.exists()
    # The same start from curl runs the command: what the refusals kept from happening.
    started = simple_post(api, "/jobs", start_body(body["name"]))
    assert started.status_code == 200, started.text
    wait_for(marker.exists, 60, 0.2, f"the job's command to create {marker}")


def test_null_origin_is_403(api):
    body = definition_body()
    response = simple_post(api, "/workflow-definitions", body, Origin="null")
    assert_refused(response, "origin 'null'")
    assert api.get(f"/workflow-definitions/{body['name']}").status_code == 404


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_a_post_a_browser_marks_as_another_sites_is_403_without_an_origin(api, site):
    body = definition_body()
    response = simple_post(api, "/workflow-definitions", body, **{"Sec-Fetch-Site": site})
    assert_refused(response, site)
    assert api.get(f"/workflow-definitions/{body['name']}").status_code == 404


def test_a_foreign_origin_may_read_but_gets_no_cors_headers(api):
    # The browser serves the answer to the page only with Access-Control-Allow-Origin.
    response = api.get("/workflow-definitions", headers={"Origin": FOREIGN_ORIGIN})
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers


def test_a_foreign_preflight_is_403_without_cors_headers(api):
    response = api.request(
        "OPTIONS",
        "/workflow-definitions",
        headers={"Origin": FOREIGN_ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    assert_refused(response, f"origin '{FOREIGN_ORIGIN}'")


def test_a_refused_request_is_answered_before_its_body_is_read(api):
    # Over the body limit: the request limits would answer 413 once they saw it; the guard, outermost,
    # answers first.
    response = api.request(
        "POST",
        "/workflow-definitions",
        data=b"x" * (1024 * 1024 + 1),
        headers={"Content-Type": FORM, "Origin": FOREIGN_ORIGIN},
    )
    assert_refused(response)


# DNS rebinding: the Host header


def test_foreign_host_is_403_on_get_and_post(api):
    host = f"evil.example:{port_of(api)}"
    assert_refused(api.get("/workflow-definitions", headers={"Host": host}), f"host '{host}'")
    body = definition_body()
    # A rebound page is the service's "own origin" as far as its browser knows.
    response = simple_post(api, "/workflow-definitions", body, Host=host, Origin=f"http://{host}")
    assert_refused(response, f"host '{host}'")
    assert api.get(f"/workflow-definitions/{body['name']}").status_code == 404


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1", "[::1]", "LOCALHOST"])
def test_loopback_hosts_at_the_service_port_are_served(api, name):
    response = api.get("/workflow-definitions", headers={"Host": f"{name}:{port_of(api)}"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("host", ["localhost:{other}", "127.0.0.1:{other}", "127.0.0.1", "localhost"])
def test_a_loopback_host_at_another_port_is_403(api, host):
    host = host.format(other=port_of(api) + 1)
    assert_refused(api.get("/workflow-definitions", headers={"Host": host}), f"host '{host}'")


def test_a_request_without_host_is_403(api):
    # HTTP/1.1 demands a Host (the server answers 400 itself); HTTP/1.0 may leave it out.
    with socket.create_connection(("127.0.0.1", port_of(api)), timeout=30) as sock:
        sock.sendall(b"GET /workflow-definitions HTTP/1.0\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.split()[1] == b"403", answer
    assert b"Host" in rest.partition(b"\r\n\r\n")[2]


# What keeps working


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_post_from_the_services_own_origin_is_201(api, scheme):
    # https: the TLS-terminating load balancer in front forwards plain HTTP with the same Host.
    body = definition_body()
    response = api.post("/workflow-definitions", body, headers={"Origin": f"{scheme}://{host_of(api)}"})
    assert response.status_code == 201, response.text
    assert "Access-Control-Allow-Origin" not in response.headers
    assert api.get(f"/workflow-definitions/{body['name']}").status_code == 200


def test_own_origin_is_the_requests_host_whatever_its_case(api):
    host = f"localhost:{port_of(api)}"
    body = definition_body()
    response = simple_post(
        api, "/workflow-definitions", body, Host=host, Origin=f"http://LOCALHOST:{port_of(api)}"
    )
    assert response.status_code == 201, response.text


def test_a_page_of_another_loopback_name_is_not_the_services_origin(api):
    body = definition_body()
    response = simple_post(
        api, "/workflow-definitions", body, Host=host_of(api), Origin=f"http://localhost:{port_of(api)}"
    )
    assert_refused(response)
    assert api.get(f"/workflow-definitions/{body['name']}").status_code == 404


def test_curl_flow_without_origin_works_with_form_content_type(api):
    # The reference README: curl -d '<json>' .../workflow-definitions, then .../jobs/.
    body = definition_body()
    assert simple_post(api, "/workflow-definitions", body).status_code == 201
    started = simple_post(api, "/jobs/", start_body(body["name"]))
    assert started.status_code == 200, started.text
    assert [w["id"] for w in workflows_of(api, body["name"])] == [started.json()["id"]]


@pytest.mark.parametrize("site", ["same-origin", "none"])
def test_fetch_metadata_of_the_services_own_pages_is_accepted(api, site):
    body = definition_body()
    response = simple_post(api, "/workflow-definitions", body, **{"Sec-Fetch-Site": site})
    assert response.status_code == 201, response.text


# A listed origin (WFM_ALLOWED_ORIGINS)


@pytest.fixture(scope="module")
def console_api():
    served = serve(app_config(allowed_origins=(CONSOLE_ORIGIN,)))
    yield Api(f"http://127.0.0.1:{served.port}")
    served.stop()


def test_a_post_from_a_listed_origin_is_201_with_cors_headers(console_api):
    body = definition_body()
    response = console_api.post("/workflow-definitions", body, headers={"Origin": CONSOLE_ORIGIN})
    assert response.status_code == 201, response.text
    assert response.headers["Access-Control-Allow-Origin"] == CONSOLE_ORIGIN
    assert "Origin" in response.headers["Vary"]
    assert console_api.get(f"/workflow-definitions/{body['name']}").status_code == 200


def test_a_get_from_a_listed_origin_carries_cors_headers(console_api):
    response = console_api.get("/workflow-definitions", headers={"Origin": CONSOLE_ORIGIN})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == CONSOLE_ORIGIN
    # A console pages through GET /workflows by this header.
    assert response.headers["Access-Control-Expose-Headers"] == "X-Next-Page-Path"


def test_a_preflight_from_a_listed_origin_is_204_with_the_cors_headers(console_api):
    response = console_api.request(
        "OPTIONS",
        "/workflow-definitions",
        headers={
            "Origin": CONSOLE_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )
    assert response.status_code == 204, response.text
    assert response.headers["Access-Control-Allow-Origin"] == CONSOLE_ORIGIN
    assert response.headers["Access-Control-Allow-Methods"] == CORS_ALLOW_METHODS
    assert response.headers["Access-Control-Allow-Headers"] == CORS_ALLOW_HEADERS
    assert int(response.headers["Access-Control-Max-Age"]) > 0
    assert "Origin" in response.headers["Vary"]


def test_an_unlisted_origin_is_still_refused_where_another_is_listed(console_api):
    preflight = console_api.request(
        "OPTIONS",
        "/workflow-definitions",
        headers={"Origin": FOREIGN_ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    assert_refused(preflight, f"origin '{FOREIGN_ORIGIN}'")
    body = definition_body()
    assert_refused(simple_post(console_api, "/workflow-definitions", body, Origin=FOREIGN_ORIGIN))
    assert console_api.get(f"/workflow-definitions/{body['name']}").status_code == 404


# A listed host (WFM_ALLOWED_HOSTS)


@pytest.fixture(scope="module")
def internal_api():
    served = serve(app_config(allowed_hosts=("wfm.internal",)))
    yield Api(f"http://127.0.0.1:{served.port}")
    served.stop()


def test_a_listed_host_is_served_and_loopback_is_not(internal_api):
    port = port_of(internal_api)
    assert (
        internal_api.get("/workflow-definitions", headers={"Host": f"wfm.internal:{port}"}).status_code == 200
    )
    assert_refused(internal_api.get("/workflow-definitions", headers={"Host": f"127.0.0.1:{port}"}))


def test_a_listed_host_behind_a_tls_load_balancer_is_its_own_origin(internal_api):
    body = definition_body()
    response = simple_post(
        internal_api, "/workflow-definitions", body, Host="wfm.internal", Origin="https://wfm.internal"
    )
    assert response.status_code == 201, response.text
    found = internal_api.get(f"/workflow-definitions/{body['name']}", headers={"Host": "wfm.internal"})
    assert found.status_code == 200


# The matching rules


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("localhost:8080", ("localhost", "8080")),
        ("localhost", ("localhost", None)),
        ("[::1]:8080", ("[::1]", "8080")),
        ("[::1]", ("[::1]", None)),
        ("::1", ("::1", None)),
    ],
)
def test_split_host(value, expected):
    assert split_host(value) == expected


@pytest.mark.parametrize(
    ("host", "allow_list", "allowed"),
    [
        ("localhost:8080", ("localhost:8080",), True),
        ("LocalHost:8080", ("localhost:8080",), True),
        ("localhost:8081", ("localhost:8080",), False),
        ("localhost", ("localhost:8080",), False),
        ("wfm.internal:9000", ("wfm.internal",), True),
        ("wfm.internal", ("wfm.internal",), True),
        ("wfm.internal.evil.example", ("wfm.internal",), False),
        ("[::1]:8080", ("[::1]:8080",), True),
        ("[::1]:8081", ("[::1]:8080",), False),
        ("localhost:8080, evil.example", ("localhost:8080",), False),
        (None, ("localhost:8080",), False),
        ("", ("localhost:8080",), False),
        ("evil.example", None, True),
        (None, None, True),
    ],
)
def test_host_is_allowed(host, allow_list, allowed):
    assert host_is_allowed(host, allow_list) is allowed


@pytest.mark.parametrize(
    ("origin", "host", "listed", "allowed"),
    [
        ("http://127.0.0.1:8080", "127.0.0.1:8080", (), True),
        ("https://wfm.example.com", "wfm.example.com", (), True),
        ("HTTP://WFM.example.com", "wfm.EXAMPLE.com", (), True),
        ("http://127.0.0.1:8081", "127.0.0.1:8080", (), False),
        ("http://localhost:8080", "127.0.0.1:8080", (), False),
        ("ftp://127.0.0.1:8080", "127.0.0.1:8080", (), False),
        ("127.0.0.1:8080", "127.0.0.1:8080", (), False),
        ("http://evil.example@127.0.0.1:8080", "127.0.0.1:8080", (), False),
        ("http://127.0.0.1:8080", None, (), False),
        ("http://console.example", "127.0.0.1:8080", ("http://console.example",), True),
        ("http://Console.example/", "127.0.0.1:8080", ("http://console.example",), True),
        ("https://console.example", "127.0.0.1:8080", ("http://console.example",), False),
        ("null", "127.0.0.1:8080", ("null",), False),
    ],
)
def test_origin_is_allowed(origin, host, listed, allowed):
    assert origin_is_allowed(origin, host, listed) is allowed


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "get"])
def test_safe_methods_are_never_refused_for_their_origin(method):
    headers = {"host": "127.0.0.1:8080", "origin": "null", "sec-fetch-site": "cross-site"}
    assert origin_refusal(method, headers, ()) is None


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_every_other_method_is_state_changing(method):
    assert origin_refusal(method, {"host": "127.0.0.1:8080", "origin": FOREIGN_ORIGIN}, ()) is not None
    assert origin_refusal(method, {"host": "127.0.0.1:8080", "sec-fetch-site": "Cross-Site"}, ()) is not None
    assert origin_refusal(method, {"host": "127.0.0.1:8080"}, ()) is None
