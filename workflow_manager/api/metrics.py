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
        started = time.perf_counter()

        async def recording_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            # An exception here is answered 500 by Connexion's ServerErrorMiddleware, outside.
            operation = (extensions.get(ROUTING_CONTEXT) or {}).get("operation_id") or UNROUTED
            REQUESTS.labels(operation=operation, status=str(status)).inc()
            REQUEST_DURATION.labels(operation=operation).observe(time.perf_counter() - started)
