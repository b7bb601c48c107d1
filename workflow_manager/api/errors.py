"""Errors -> HTTP responses, in one place.

Every error body is `{"message": ...}`. The domain's errors carry their status code
(`WorkflowManagerError.status`); Connexion's validation problems, Starlette's routing errors, an
undecodable body and anything unexpected are mapped here too. `register_error_handlers(app)` is the
one call that installs them.
"""

from __future__ import annotations

import json
import logging

from connexion.exceptions import ProblemException
from connexion.lifecycle import ConnexionResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from workflow_manager.api.spec import AllowedMethods
from workflow_manager.domain.errors import WorkflowManagerError

log = logging.getLogger(__name__)


def _json_response(status: int, message: str, headers: dict | None = None) -> ConnexionResponse:
    headers = dict(headers or {})
    if status == 401:
        # RFC 6750: a 401 names the scheme the client must use.
        headers.setdefault("WWW-Authenticate", "Bearer")
    return ConnexionResponse(
        status_code=status,
        mimetype="application/json",
        content_type="application/json",
        body=json.dumps({"message": message}),
        headers=headers,
    )


def _domain_error(_request, exc: WorkflowManagerError) -> ConnexionResponse:
    if exc.status >= 500:
        log.error("request failed: %s", exc.message)
    return _json_response(exc.status, exc.message)


def _problem(_request, exc: ProblemException) -> ConnexionResponse:
    detail = str(exc.detail or exc.title or "bad request").strip().splitlines()[0]
    return _json_response(exc.status, detail, dict(exc.headers or {}))


def _http_error_handler(allowed: AllowedMethods):
    def handle(request, exc: StarletteHTTPException) -> ConnexionResponse:
        message = str(exc.detail or "").strip().splitlines()[0] if exc.detail else ""
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            methods = allowed.for_path(request.url.path)
            if methods:
                headers["Allow"] = ", ".join(methods)
            message = f"method {request.method} is not allowed on {request.url.path}"
        return _json_response(exc.status_code, message or "error", headers)

    return handle


def _undecodable_body(_request, exc: UnicodeDecodeError) -> ConnexionResponse:
    return _json_response(400, f"request body is not valid UTF-8: {exc.reason}")


def _unexpected(_request, exc: Exception) -> ConnexionResponse:
    log.exception("unhandled error", exc_info=exc)
    return _json_response(500, f"internal error: {type(exc).__name__}")


def register_error_handlers(app, allowed: AllowedMethods) -> None:
    app.add_error_handler(WorkflowManagerError, _domain_error)
    app.add_error_handler(ProblemException, _problem)
    app.add_error_handler(StarletteHTTPException, _http_error_handler(allowed))
    app.add_error_handler(UnicodeDecodeError, _undecodable_body)
    app.add_error_handler(Exception, _unexpected)
