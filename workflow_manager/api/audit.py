"""The audit log: one JSON line for every request that changes something or tries to (every method
but GET, HEAD and OPTIONS): who (the token's name, `anonymous` with auth off), the operation, the
target id, the status and its outcome. Logged on `workflow_manager.audit` at INFO; a refused
attempt (401, 403) too, at WARNING.

It sits after Connexion's routing (it needs the operationId and the path parameters) and before its
security (so that it sees the 401 and 403 the security function raises). The caller is read from
the request scope, where the security function leaves it (`auth.PRINCIPAL_SCOPE_KEY`), so a known
caller refused for its role is logged by name.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from connexion.middleware.abstract import ROUTING_CONTEXT

from workflow_manager.api.auth import PRINCIPAL_SCOPE_KEY
from workflow_manager.api.middleware import SAFE_METHODS
from workflow_manager.domain.access import ANONYMOUS

audit_log = logging.getLogger("workflow_manager.audit")

# Path parameters that name what an operation changes, in the order they are joined.
TARGET_PARAMETERS = ("namespace", "name", "workflowID")
# A response body is read for the id it created (a started workflow, a definition version) only
# when it is this small; larger ones (none that create) are passed through unread.
MAX_BODY_READ_BYTES = 64 * 1024


def outcome_of(status: int) -> str:
    if status < 400:
        return "ok"
    if status in (401, 403):
        return "denied"
    if status < 500:
        return "refused"
    return "failed"


def _status_of(err: Exception) -> int:
    """The status an error is answered with (workflow_manager.api.errors): the domain's errors carry
    `status`, Connexion's problems `status`, Starlette's `status_code`; anything else is a 500."""
    for attribute in ("status", "status_code"):
        value = getattr(err, attribute, None)
        if isinstance(value, int):
            return value
    return 500


def _created_id(body: bytes) -> str | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    if "version" in document and "name" in document and "stateMachine" in document:
        return f"{document['name']}:{document['version']}"
    value = document.get("id")
    return value if isinstance(value, str) else None


class AuditLogMiddleware:
    """`auth_enabled`: whether callers need tokens; without, every caller is `anonymous`."""

    def __init__(self, app, auth_enabled: bool):
        self.app = app
        self.auth_enabled = auth_enabled

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method", "GET") in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        status = 500
        body = bytearray()

        async def recording_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and len(body) <= MAX_BODY_READ_BYTES:
                body.extend(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        except Exception as err:
            # Errors (the security function's 401 and 403 among them) become responses in
            # Connexion's exception middleware, outside this one: log the status they will get.
            status = _status_of(err)
            raise
        finally:
            self._log(scope, status, bytes(body))

    def _log(self, scope: dict[str, Any], status: int, body: bytes) -> None:
        extensions = scope.get("extensions") or {}
        principal = extensions.get(PRINCIPAL_SCOPE_KEY)
        path_params = scope.get("path_params") or {}
        record: dict[str, Any] = {
            "audit": True,
            "who": self._who(principal),
            "operation": (extensions.get(ROUTING_CONTEXT) or {}).get("operation_id"),
            "method": scope.get("method"),
            "path": scope.get("path"),
            "target": "/".join(str(path_params[p]) for p in TARGET_PARAMETERS if p in path_params) or None,
            "status": status,
            "outcome": outcome_of(status),
        }
        if status < 300 and len(body) <= MAX_BODY_READ_BYTES:
            record["created"] = _created_id(body)
        audit_log.log(
            logging.WARNING if status in (401, 403) else logging.INFO, json.dumps(record, sort_keys=False)
        )

    def _who(self, principal) -> str:
        """The token's name; `unauthenticated` for a request refused for no or an unknown token."""
        if principal is not None:
            return principal.name
        return "unauthenticated" if self.auth_enabled else ANONYMOUS.name
