"""The ASGI application: `create_app(config)` builds the runtime (`workflow_manager.wiring`), serves
`swagger.yml` with one handler per operationId, and installs the error mapping and the middlewares.

Serve with gunicorn and uvicorn workers (`deploy/gunicorn.conf.py`); in embedded mode the emulator
lives in the process, so there is one worker process.
"""

from __future__ import annotations

import contextlib

import connexion
import inflection
from connexion.middleware import MiddlewarePosition
from connexion.resolver import Resolver

from workflow_manager.api.audit import AuditLogMiddleware
from workflow_manager.api.auth import bearer_security_map
from workflow_manager.api.browser import BrowserGuardMiddleware
from workflow_manager.api.errors import register_error_handlers
from workflow_manager.api.metrics import RequestMetricsMiddleware
from workflow_manager.api.middleware import (
    CurlFriendlyMiddleware,
    LivenessMiddleware,
    RequestBodyMiddleware,
    RequestLimitsMiddleware,
)
from workflow_manager.api.spec import SPEC_PATH, AllowedMethods, load_spec, serve_raw_spec
from workflow_manager.api.tokens import TokenRegistry
from workflow_manager.config import PROJECT_ROOT, Config
from workflow_manager.wiring import build_runtime


class StartupRefused(RuntimeError):
    """The configuration must not serve (`Config.startup_refusal`, a bad tokens file): one line."""


def create_app(config: Config | None = None) -> connexion.FlaskApp:
    config = config or Config.from_env()
    refusal = config.startup_refusal()
    if refusal:
        raise StartupRefused(refusal)
    serve_raw_spec()
    security: dict = {}
    if config.auth_enabled:
        try:
            security["security_map"] = bearer_security_map(TokenRegistry(config.auth_tokens_file))
        except ValueError as err:
            raise StartupRefused(f"refusing to start: {err}") from None
    runtime, handlers = build_runtime(config)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        runtime.start_background()
        try:
            yield
        finally:
            runtime.stop()

    app = connexion.FlaskApp(__name__, specification_dir=str(PROJECT_ROOT), lifespan=lifespan)
    app.add_api(
        # With auth off the spec's security requirement is dropped: no operation asks for a token.
        load_spec(with_security=config.auth_enabled),
        strict_validation=True,
        pythonic_params=True,
        resolver=Resolver(
            function_resolver=lambda operation_id: getattr(handlers, inflection.underscore(operation_id))
        ),
        **security,
    )
    register_error_handlers(app, AllowedMethods(SPEC_PATH))
    # add_middleware inserts just before the named position, so of the middlewares added at one
    # position the first added runs first. The request metrics come first, to count and time every
    # answer (they read no body); then the browser guard, so that it refuses a request before any
    # other middleware reads its body or rewrites it (CurlFriendly's JSON reading).
    app.add_middleware(RequestMetricsMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION)
    app.add_middleware(
        BrowserGuardMiddleware,
        position=MiddlewarePosition.BEFORE_EXCEPTION,
        allowed_hosts=config.host_allow_list,
        allowed_origins=config.allowed_origins,
    )
    # Inside the browser guard (its Host rule holds for probes too), outside everything that waits.
    app.add_middleware(LivenessMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION)
    app.add_middleware(
        RequestLimitsMiddleware,
        position=MiddlewarePosition.BEFORE_EXCEPTION,
        max_body_bytes=config.max_body_bytes,
        timeout_seconds=config.request_timeout_seconds,
    )
    app.add_middleware(CurlFriendlyMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION)
    # After CurlFriendly, which says which bodies are JSON; inside RequestLimits, which bounds them.
    app.add_middleware(RequestBodyMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION)
    # After routing (it logs the operationId and path parameters), before security (it logs the
    # 401 and 403 that security answers).
    app.add_middleware(
        AuditLogMiddleware, position=MiddlewarePosition.BEFORE_SECURITY, auth_enabled=config.auth_enabled
    )
    app.runtime = runtime
    return app
