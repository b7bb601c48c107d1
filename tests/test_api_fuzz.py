"""Property-based requests generated from swagger.yml against the served app: whatever a caller
sends, the answer is never a 5xx (a caller's mistake is a 4xx with a message)."""

from __future__ import annotations

from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings

SPEC = Path(__file__).parent.parent / "swagger.yml"
schema = schemathesis.openapi.from_path(SPEC)


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_generated_requests_never_get_a_server_error(case, api):
    response = case.call(base_url=api.base_url)
    assert response.status_code < 500, (case.as_curl_command(), response.text)
    if response.status_code >= 400:
        assert isinstance(response.json().get("message"), str), response.text
