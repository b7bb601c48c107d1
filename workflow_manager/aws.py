"""AWS client construction for each backend the service can run on (`WFM_BACKEND`).

- `embedded`: the in-process emulator (`workflow_manager.emulator`); clients point at its endpoint
  with dummy credentials.
- `endpoint`: any AWS-compatible endpoint, such as a moto server: `WFM_AWS_ENDPOINT` or the standard
  `AWS_ENDPOINT_URL`.
- `localstack`: localstack-client's session, which finds LocalStack through `LOCALSTACK_HOST`.
- `aws`: real AWS through the standard credential chain.

Wiring only: the domain never imports boto3; ports receive the clients built here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config as BotoConfig

# botocore's standard retry mode retries throttling and transient errors with backoff; the ports
# turn what is left into BackendUnavailable (503).
# The pool is shared by the API, the updater and the embedded workers' pollers, and the read
# timeout outlasts GetActivityTask's 60-second long poll.
RETRY_CONFIG = BotoConfig(
    retries={"mode": "standard", "max_attempts": 5},
    connect_timeout=5,
    read_timeout=70,
    max_pool_connections=50,
)
DUMMY_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@dataclass
class AwsClients:
    """Builds boto3 clients for one backend. `client("stepfunctions")`."""

    backend: str
    region: str
    endpoint_url: str | None = None
    _session: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.backend == "localstack":
            import localstack_client.session

            self._session = localstack_client.session.Session(region_name=self.region)
        else:
            self._session = boto3.session.Session(region_name=self.region)

    def client(self, service: str, **overrides: Any):
        kwargs: dict[str, Any] = {"config": RETRY_CONFIG, **overrides}
        if self.backend in ("embedded", "endpoint"):
            kwargs.setdefault("endpoint_url", self.endpoint_url)
            # An emulator takes any credentials; a configured chain is kept for a real endpoint.
            if self.backend == "embedded" or self._session.get_credentials() is None:
                kwargs.update(DUMMY_CREDENTIALS)
        return self._session.client(service, **kwargs)
