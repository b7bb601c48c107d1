"""Property-based requests generated from swagger.yml against the served app: whatever a caller
sends, the answer is never a 5xx (a caller's mistake is a 4xx with a message). Run twice: on the
open embedded service, and with auth on and an admin token, so that the security handling is
under the same requests."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.conftest import FIXTURES, beside_config, serve

SPEC = Path(__file__).parent.parent / "swagger.yml"
schema = schemathesis.openapi.from_path(SPEC)
# The same generated requests for both runs.
FUZZ_SETTINGS = settings(
    max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
ADMIN_TOKEN = "admin-secret"  # tests/fixtures/auth/tokens.yml


@pytest.fixture(scope="module")
def auth_base_url(served_app):
    served = serve(
        beside_config(
            served_app,
            auth_tokens_file=FIXTURES / "auth" / "tokens.yml",
            start_workers=False,
            default_namespace="fuzz-auth",
        )
    )
    yield f"http://127.0.0.1:{served.port}"
    served.stop()


def check_response(case, response) -> None:
    assert response.status_code < 500, (case.as_curl_command(), response.text)
    if response.status_code >= 400:
        assert isinstance(response.json().get("message"), str), response.text


@schema.parametrize()
@FUZZ_SETTINGS
def test_generated_requests_never_get_a_server_error(case, api):
    check_response(case, case.call(base_url=api.base_url))


@schema.parametrize()
@FUZZ_SETTINGS
def test_generated_requests_with_auth_on_and_an_admin_token_never_get_a_server_error(case, auth_base_url):
    # The spec declares the bearer scheme, so schemathesis generates Authorization values of its
    # own (or none): the admin's token replaces them.
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {ADMIN_TOKEN}"}
    response = case.call(base_url=auth_base_url)
    check_response(case, response)
    # The admin may call everything: a refusal here would be a gap in the roles table.
    assert response.status_code not in (401, 403), (case.as_curl_command(), response.text)
