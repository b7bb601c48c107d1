"""Counting and timing every HTTP request for the metrics (`workflow_manager_requests_total`,
`workflow_manager_request_duration_seconds`), by operationId and status.

The outermost of the service's middlewares, so that it sees every answer: the refusals of the
browser guard and the request limits (413, 503 timeouts) as well as the handlers' answers, and
times them all. The operationId is read after the request, from the routing context Connexion's
routing leaves in the scope's `extensions`; this middleware creates that dict, so that the inner
middlewares' copies of the scope share it. A request answered before routing (a refusal, the
liveness probe) or matching no route is `unrouted`.
"""

from __future__ import annotations

import time

from connexion.middleware.abstract import ROUTING_CONTEXT

from workflow_manager.telemetry.metrics import REQUEST_DURATION, REQUESTS, UNROUTED


class RequestMetricsMiddleware:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extensions = scope.setdefault("extensions", {})
        status = 500
        recorded = False
        started = time.perf_counter()

        def record() -> None:
            nonlocal recorded
            recorded = True
            operation = (extensions.get(ROUTING_CONTEXT) or {}).get("operation_id") or UNROUTED
            REQUESTS.labels(operation=operation, status=str(status)).inc()
            REQUEST_DURATION.labels(operation=operation).observe(time.perf_counter() - started)

        async def recording_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                # Before the last of the body goes out: a caller that has its answer (a test, the
                # next scrape) finds the request counted.
                record()
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            if not recorded:
                # No answer went out: an exception, which Connexion's ServerErrorMiddleware,
                # outside, answers 500.
                record()
