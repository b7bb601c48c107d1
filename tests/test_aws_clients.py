"""Which endpoint and credentials each backend's clients use (WFM_BACKEND)."""

from __future__ import annotations

from workflow_manager.wiring import RETRY_CONFIG, AwsClients


def test_endpoint_backend_points_clients_at_the_endpoint():
    client = AwsClients("endpoint", "eu-west-1", "http://127.0.0.1:4999").client("stepfunctions")
    assert client.meta.endpoint_url == "http://127.0.0.1:4999"
    assert client.meta.region_name == "eu-west-1"
    assert client.meta.config.retries["mode"] == "adaptive"  # backs off after throttling (issue 10)


def test_localstack_backend_uses_localstack_host(monkeypatch):
    monkeypatch.setenv("LOCALSTACK_HOST", "127.0.0.1:4566")
    client = AwsClients("localstack", "us-east-1").client("stepfunctions")
    assert client.meta.endpoint_url == "http://127.0.0.1:4566"
    assert client.meta.config.read_timeout == RETRY_CONFIG.read_timeout


def test_aws_backend_uses_the_regional_endpoint():
    client = AwsClients("aws", "us-west-2").client("stepfunctions")
    assert client.meta.endpoint_url == "https://states.us-west-2.amazonaws.com"
