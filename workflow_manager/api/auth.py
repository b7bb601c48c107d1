"""Bearer tokens on the API (CONTRACT 9.1): the one function Connexion's security handling calls
for every secured operation (who is calling, and may they call this operation), and the caller as
handlers see it. The tokens file is `workflow_manager.api.tokens`.
"""

from __future__ import annotations

from typing import Any

from connexion.context import context as request_context
from connexion.middleware.abstract import ROUTING_CONTEXT
from connexion.security import ApiKeySecurityHandler

from workflow_manager.api.tokens import TokenRegistry
from workflow_manager.domain.access import ANONYMOUS, Principal, require_operation
from workflow_manager.domain.errors import Unauthenticated

# Where the security function leaves the caller for the audit log (workflow_manager.api.audit),
# which also needs it when the request is then refused.
PRINCIPAL_SCOPE_KEY = "wfm_principal"
AUTH_HINT = "send `Authorization: Bearer <token>`"


def bearer_security_map(registry: TokenRegistry) -> dict[str, type]:
    """Connexion's `security_map` for the spec's `bearer` scheme (an apiKey in the Authorization
    header, Swagger 2.0 having no bearer type): its handler calls `authenticate` for every secured
    operation, before the request is validated, so a caller without the role gets 403 whatever it
    sent."""

    def authenticate(request) -> dict[str, Any]:
        header = request.headers.get("Authorization")
        if not header:
            raise Unauthenticated(f"authentication required: {AUTH_HINT}")
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated(f"the Authorization header is not a bearer token: {AUTH_HINT}")
        principal = registry.principal_for(token)
        if principal is None:
            raise Unauthenticated("unknown token")
        extensions = request.scope.setdefault("extensions", {})
        extensions[PRINCIPAL_SCOPE_KEY] = principal
        require_operation(principal, extensions.get(ROUTING_CONTEXT, {}).get("operation_id") or "")
        return {"sub": principal.name, "principal": principal}

    class BearerTokenHandler(ApiKeySecurityHandler):
        def get_fn(self, security_scheme, required_scopes):
            return authenticate

    return {"apiKey": BearerTokenHandler}


def current_principal() -> Principal:
    """The caller of the request being handled: its token's principal, or ANONYMOUS with auth off."""
    token_info = request_context.get("token_info") or {}
    return token_info.get("principal", ANONYMOUS)
