"""ASGI middlewares that run before Connexion's routing: request limits (body size, timeout,
control characters in the path), the curl-friendly body and path handling, and the request body
reader (chunked bodies, the JSON nesting limit)."""

from __future__ import annotations

import asyncio
import json
import re
import time

# Methods that do not change anything (RFC 9110 "safe"); every other request is state-changing, and
# is what the browser guard checks and the audit log records.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def send_json_error(send, status: int, message: str) -> None:
    """Answer `{"message": ...}` with `status` from an ASGI middleware, in the shape of the error
    handlers' answers, for a request refused before Connexion sees it."""
    body = json.dumps({"message": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# Where RequestLimitsMiddleware leaves the request's deadline (time.monotonic()) in the ASGI scope's
# extensions.
REQUEST_DEADLINE_SCOPE_KEY = "wfm_deadline"


class RequestLimitsMiddleware:
    """Answers 413 for a body over the limit, 503 for a request over the timeout (the reference
    wrapped its router in http.TimeoutHandler(5s)) and 400 for a path with control characters,
    before and around everything else."""

    def __init__(self, app, max_body_bytes: int, timeout_seconds: float):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.timeout_seconds = timeout_seconds

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if any(ord(c) < 32 or ord(c) == 127 for c in scope.get("path", "")):
            # No name the API knows can hold a control character, and the router does not
            # match paths with a newline consistently: answer before routing.
            await send_json_error(send, 400, "request path contains control characters")
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        too_large = f"request body is over the limit of {self.max_body_bytes} bytes"
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await send_json_error(send, 413, too_large)
            return
        received = 0
        response_started = False

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message):
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        # Handlers whose work could outlast the timeout (a start) read the deadline, so that they
        # answer before it with what they have done, rather than go on after the 503.
        scope.setdefault("extensions", {})[REQUEST_DEADLINE_SCOPE_KEY] = (
            time.monotonic() + self.timeout_seconds
        )
        try:
            await asyncio.wait_for(self.app(scope, limited_receive, tracking_send), self.timeout_seconds)
        except _BodyTooLarge:
            if not response_started:
                await send_json_error(send, 413, too_large)
        except TimeoutError:
            if not response_started:
                await send_json_error(send, 503, "Request timed out")


class _BodyTooLarge(Exception):
    pass


class CurlFriendlyMiddleware:
    """Lets the reference README's curl flow work as written: `curl -d` sends a JSON body as
    `application/x-www-form-urlencoded` (or with no type), and the README posts to `/jobs/` with a
    trailing slash. Such bodies are read as JSON, and a trailing slash is ignored."""

    _JSON_TYPES = (b"", b"application/x-www-form-urlencoded")

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            scope = dict(scope)
            path = scope.get("path", "")
            if len(path) > 1 and path.endswith("/") and not path.startswith("/ui"):
                scope["path"] = path.rstrip("/") or "/"
                scope["raw_path"] = scope["path"].encode()
            headers = [(k, v) for k, v in scope.get("headers", [])]
            content_type = next((v for k, v in headers if k == b"content-type"), b"")
            has_body = any(k in (b"content-length", b"transfer-encoding") for k, _ in headers)
            if has_body and content_type.split(b";")[0].strip().lower() in self._JSON_TYPES:
                headers = [(k, v) for k, v in headers if k != b"content-type"]
                headers.append((b"content-type", b"application/json"))
                scope["headers"] = headers
        await self.app(scope, receive, send)


LIVENESS_PATH = "/_live"
_LIVE_BODY = json.dumps({"status": "ok"}).encode()


class LivenessMiddleware:
    """Answers `GET /_live` (swagger.yml's liveCheck) itself, on the event loop: the Flask handlers
    run in a bounded thread pool, and a liveness probe must not wait behind slow requests there
    (a full pool would otherwise get the process restarted for being busy)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope.get("path") == LIVENESS_PATH and scope.get("method") == "GET":
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(_LIVE_BODY)).encode()),
            ]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": _LIVE_BODY})
            return
        await self.app(scope, receive, send)


# How deeply a JSON request body may nest arrays and objects. Python's parsers and walkers recurse
# once per level (json.loads, Connexion's schema validation, copy.deepcopy) against a recursion limit
# of 1,000 frames: a body ~1,000 deep was a RecursionError (500). 200 holds the deepest definition
# the service accepts (4 levels per Parallel state, MAX_NESTING_DEPTH of them) with room for
# Parameters, and keeps the walkers far from the limit.
MAX_JSON_DEPTH = 200

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """Whether `body` nests arrays and objects deeper than `limit`, counted in one pass over the
    brackets outside strings, without parsing it (a malformed body is the parser's to refuse)."""
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    depth = 0
    for byte in brackets:
        if byte in b"[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


class RequestBodyMiddleware:
    """Reads a request's body whole before Connexion does, so that

    - a chunked body (`Transfer-Encoding: chunked`, no `Content-Length`) is seen: Connexion's body
      validation reads a missing or zero `Content-Length` as no body ("RequestBody is required"),
      so the body is replayed with its `Content-Length`;
    - a JSON body nested deeper than MAX_JSON_DEPTH is a 400 before anything parses it.

    Runs inside RequestLimitsMiddleware, whose receive stops a body over `max_body_bytes`, so what
    is buffered here is bounded."""

    def __init__(self, app, max_json_depth: int = MAX_JSON_DEPTH):
        self.app = app
        self.max_json_depth = max_json_depth

    async def __call__(self, scope, receive, send):
        headers = scope.get("headers") or []
        names = {k.lower() for k, _ in headers}
        if scope["type"] != "http" or not names & {b"content-length", b"transfer-encoding"}:
            await self.app(scope, receive, send)
            return
        messages = []
        body = bytearray()
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body.extend(message.get("body", b""))
            if not message.get("more_body", False):
                break
        content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
        media_type = content_type.split(b";")[0].strip().lower()
        is_json = media_type == b"application/json" or media_type.endswith(b"+json")
        if is_json and json_depth_exceeds(bytes(body), self.max_json_depth):
            message = f"request body is nested deeper than {self.max_json_depth} levels"
            await send_json_error(send, 400, message)
            return
        if b"content-length" not in names:
            scope = dict(scope)
            scope["headers"] = [(k, v) for k, v in headers if k.lower() != b"transfer-encoding"]
            scope["headers"].append((b"content-length", str(len(body)).encode()))
        replay = iter(messages)

        async def replaying_receive():
            try:
                return next(replay)
            except StopIteration:
                return await receive()

        await self.app(scope, replaying_receive, send)
