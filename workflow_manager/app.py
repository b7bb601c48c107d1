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

from workflow_manager.api.browser import BrowserGuardMiddleware
from workflow_manager.api.errors import register_error_handlers
from workflow_manager.api.middleware import CurlFriendlyMiddleware, RequestLimitsMiddleware
from workflow_manager.api.spec import SPEC_FILE, SPEC_PATH, AllowedMethods, serve_raw_spec
from workflow_manager.config import PROJECT_ROOT, Config
from workflow_manager.wiring import build_runtime


def create_app(config: Config | None = None) -> connexion.FlaskApp:
    config = config or Config.from_env()
    serve_raw_spec()
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
        SPEC_FILE,
        strict_validation=True,
        pythonic_params=True,
        resolver=Resolver(
            function_resolver=lambda operation_id: getattr(handlers, inflection.underscore(operation_id))
        ),
    )
    register_error_handlers(app, AllowedMethods(SPEC_PATH))
    # add_middleware inserts just before the named position, so of the middlewares added at one
    # position the first added runs first: the browser guard is added first so that it refuses a
    # request before any other reads its body or rewrites it (CurlFriendly's JSON reading).
    app.add_middleware(
        BrowserGuardMiddleware,
        position=MiddlewarePosition.BEFORE_EXCEPTION,
        allowed_hosts=config.host_allow_list,
        allowed_origins=config.allowed_origins,
    )
    app.add_middleware(
        RequestLimitsMiddleware,
        position=MiddlewarePosition.BEFORE_EXCEPTION,
        max_body_bytes=config.max_body_bytes,
        timeout_seconds=config.request_timeout_seconds,
    )
    app.add_middleware(CurlFriendlyMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION)
    app.runtime = runtime
    return app
