"""The service's Prometheus metrics, all named `workflow_manager_*`, and the scrape's text.

- `requests_total{operation,status}` and `request_duration_seconds{operation}`: every HTTP request,
  by the Connexion operationId (`unrouted` for a request answered before routing or matching no
  route), observed by `workflow_manager.api.metrics.RequestMetricsMiddleware`.
- `aws_calls_total{service,operation,outcome}` (ok, throttled, error) and
  `aws_call_retries_total{service,operation}`: every botocore call the service's clients make
  (`workflow_manager.telemetry.aws`). A call counts once, with the outcome after botocore's retries;
  the retries it took (throttles among them) are counted apart, so throttling that the retries
  absorbed still shows.
- `store_lag_seconds{status}`: from an execution's stop (the backend's stoppedAt) to the moment the
  service records the terminal status; its `_count` by status is the workflows finished.
- `workflows{status}`: the active workflows by status, read from the store at scrape time.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
UNROUTED = "unrouted"
# The text format every Prometheus reads (prometheus-client's CONTENT_TYPE_PLAIN_0_0_4 less the
# charset: Flask appends `; charset=utf-8` to every text/ type, and swagger.yml's `produces`, which
# Connexion matches exactly, names this).
CONTENT_TYPE = "text/plain; version=0.0.4"
# Outcomes of an AWS call.
OK, THROTTLED, ERROR = "ok", "throttled", "error"

REQUESTS = Counter(
    "workflow_manager_requests", "HTTP requests answered, by operationId and status", ["operation", "status"]
)
REQUEST_DURATION = Histogram(
    "workflow_manager_request_duration_seconds", "HTTP request latency, by operationId", ["operation"]
)
AWS_CALLS = Counter(
    "workflow_manager_aws_calls",
    "AWS API calls, by service, operation and outcome (ok, throttled, error) after botocore's retries",
    ["service", "operation", "outcome"],
)
AWS_CALL_RETRIES = Counter(
    "workflow_manager_aws_call_retries",
    "Attempts botocore retried (throttles, transient faults), by service and operation",
    ["service", "operation"],
)
# From a second (the updater's fastest check) to ten minutes (its slowest interval, with backoff).
STORE_LAG = Histogram(
    "workflow_manager_store_lag_seconds",
    "From an execution's stop to the store recording the workflow's terminal status",
    ["status"],
    buckets=(0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
)


class PrometheusWorkflowObserver:
    """The workflow service's observer (`workflow_manager.services.workflows.WorkflowObserver`)."""

    def workflow_finished(self, status: str, stopped_at: datetime | None, recorded_at: datetime) -> None:
        if stopped_at is None:
            return
        # Clocks of the backend and the service may disagree by a little: a negative lag is 0.
        STORE_LAG.labels(status=status).observe(max((recorded_at - stopped_at).total_seconds(), 0.0))


class _WorkflowCounts:
    """A collector of `workflow_manager_workflows{status}`, read when scraped."""

    def __init__(self, count_by_status: Callable[[], Mapping[str, int]]):
        self._count_by_status = count_by_status

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "workflow_manager_workflows", "Active workflows in the store, by status", labels=["status"]
        )
        for status, count in sorted(self._count_by_status().items()):
            family.add_metric([status], count)
        yield family


class _Collected:
    """Another registry's metrics, as one collector of a scrape's registry."""

    def __init__(self, registry: CollectorRegistry):
        self._registry = registry

    def collect(self):
        return self._registry.collect()


class MetricsExporter:
    """Renders a scrape: this process's metrics (all processes' with PROMETHEUS_MULTIPROC_DIR set)
    and the workflows by status."""

    def __init__(self, count_workflows_by_status: Callable[[], Mapping[str, int]]):
        self._workflow_counts = _WorkflowCounts(count_workflows_by_status)

    def render(self) -> tuple[bytes, str]:
        """(the Prometheus text format, version 0.0.4: what every Prometheus reads; its content type)."""
        registry = CollectorRegistry(auto_describe=False)
        multiproc_dir = os.environ.get(MULTIPROC_DIR_VARIABLE)
        if multiproc_dir:
            MultiProcessCollector(registry, path=multiproc_dir)
        else:
            registry.register(_Collected(REGISTRY))
        registry.register(self._workflow_counts)
        return generate_latest(registry), CONTENT_TYPE
