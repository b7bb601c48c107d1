"""The browser guard (CONTRACT 9.1): what a web page the user happens to open may do to the service.

The threats, and why each rule exists:

- A page may send a "simple" request to any address without asking first (no CORS preflight):
  `fetch(url, {method: "POST", mode: "no-cors", body: "..."})` or a plain `<form>` POST, with a
  `text/plain`, `application/x-www-form-urlencoded` or `multipart/form-data` body. The page cannot
  read the answer, but the request is served. `CurlFriendlyMiddleware` reads form-encoded and
  untyped bodies as JSON (so that `curl -d` works), so such a request could save a definition and
  start it: a Batch Task's `ContainerOverrides.Command` runs on the worker. Rule: a state-changing
  request (any method but GET, HEAD, OPTIONS) that carries an `Origin` other than the service's
  own or one listed in `WFM_ALLOWED_ORIGINS` is 403. Browsers send `Origin` on every cross-origin
  POST, PUT and DELETE, and a page cannot remove or forge it; curl sends none, so `curl -d` keeps
  working.
- `Origin: null` comes from sandboxed iframes, `data:` and `file:` pages, cross-origin redirects
  and pages with `Referrer-Policy: no-referrer`, of any site; it names no one, so it is refused
  whatever the lists say.
- `Sec-Fetch-Site: cross-site` (or `same-site`) without an `Origin` is a browser telling us the
  request came from another site. Browsers send `Origin` with every POST, PUT and DELETE today, so
  this only matters if one ever does not; refusing it costs nothing (defence in depth).
  Non-browser clients send neither header.
- DNS rebinding: a page at `evil.example` makes its name resolve to 127.0.0.1 and then talks to the
  service as its own origin (the browser's same-origin policy is satisfied, the page reads the
  answers). The one trace left is the `Host` header, `evil.example:PORT`. Rule: every request (GET
  too: reading is what rebinding is for) whose `Host` is not in the allow list is 403. The
  embedded default is the loopback names at the service's port (`Config.host_allow_list`);
  elsewhere `WFM_ALLOWED_HOSTS`, by default any (a load balancer in front decides).
- CORS, for the listed origins only: a preflight from a listed origin is answered (204) and its
  requests' answers carry `Access-Control-Allow-Origin`; any other origin gets no CORS header, so
  a page cannot read even GET answers cross-origin, and its preflight is 403. No
  `Access-Control-Allow-Credentials`: the API authenticates with a bearer token the page sets
  itself, never with cookies.

The service's own origin is an `Origin` whose host[:port] is the request's `Host`; its scheme may
be http or https, since in production a TLS-terminating load balancer forwards plain HTTP.

A refused request is answered before anything inside runs (the guard is the outermost of the
service's middlewares; only Connexion's ServerErrorMiddleware is outside it): no body is read, no
handler runs, nothing changes.
"""

from __future__ import annotations

from workflow_manager.api.middleware import SAFE_METHODS, send_json_error

# What Sec-Fetch-Site says about a request another site's page sent (Fetch Metadata).
FOREIGN_FETCH_SITES = frozenset({"cross-site", "same-site"})
NULL_ORIGIN = "null"
# The preflight answer for a listed origin: the API's methods and the request headers it reads.
CORS_ALLOW_METHODS = "GET, POST, PUT, DELETE"
CORS_ALLOW_HEADERS = "Authorization, Content-Type, Idempotency-Key"
# How long a browser may reuse a preflight answer. Browsers cap it (Chromium at 2 hours); ten
# minutes lets a change of WFM_ALLOWED_ORIGINS take effect soon.
CORS_MAX_AGE_SECONDS = 600
# Response headers a page may read beyond the CORS-safelisted ones: the listing's next page.
CORS_EXPOSE_HEADERS = "X-Next-Page-Path"


def split_host(value: str) -> tuple[str, str | None]:
    """The name and the port (None without one) of a `Host` value or an origin's host[:port]:
    `localhost:8080`, `[::1]:8080`, `wfm.internal`."""
    if value.startswith("["):
        end = value.find("]")
        rest = value[end + 1 :] if end != -1 else None
        if rest == "":
            return value, None
        if rest is not None and rest.startswith(":"):
            return value[: end + 1], rest[1:]
        return value, None
    name, colon, port = value.rpartition(":")
    if colon and ":" not in name:
        return name, port
    return value, None


def host_is_allowed(host: str | None, allow_list: tuple[str, ...] | None) -> bool:
    """Whether the service answers to this `Host` value. `allow_list`: lower-case `host` entries
    (that host at any port) and `host:port` entries (exactly); None allows any, even none."""
    if allow_list is None:
        return True
    if not host:
        return False
    name, port = split_host(host.lower())
    for entry in allow_list:
        entry_name, entry_port = split_host(entry)
        if name == entry_name and (entry_port is None or entry_port == port):
            return True
    return False


def origin_host(origin: str) -> str | None:
    """The lower-case host[:port] of an http or https origin (`http://127.0.0.1:8080`), else None."""
    scheme, separator, authority = origin.lower().partition("://")
    if not separator or scheme not in ("http", "https") or not authority:
        return None
    if any(c in authority for c in "/@?#"):
        return None
    return authority


def normalized_origin(origin: str) -> str:
    """An origin as `Config.allowed_origins` holds them: lower case, no trailing slash."""
    return origin.strip().rstrip("/").lower()


def is_listed_origin(origin: str | None, allowed_origins: tuple[str, ...]) -> bool:
    """Whether the origin is one of WFM_ALLOWED_ORIGINS (never `null`, even if listed)."""
    if origin is None:
        return False
    origin = normalized_origin(origin)
    return origin != NULL_ORIGIN and origin in allowed_origins


def origin_is_allowed(origin: str, host: str | None, allowed_origins: tuple[str, ...]) -> bool:
    """Whether a request with this `Origin` may change something: the service's own origin (its
    host[:port] is the request's `Host`, scheme http or https) or a listed one."""
    if normalized_origin(origin) == NULL_ORIGIN:
        return False
    if is_listed_origin(origin, allowed_origins):
        return True
    own = origin_host(normalized_origin(origin))
    return own is not None and host is not None and own == host.lower()


def host_refusal(host: str | None, allowed_hosts: tuple[str, ...] | None) -> str | None:
    """Why a request with this `Host` is refused (403), or None: the DNS rebinding rule."""
    if host_is_allowed(host, allowed_hosts):
        return None
    if not host:
        return "a request without a Host header is not allowed (WFM_ALLOWED_HOSTS)"
    return f"host {host!r} is not allowed (WFM_ALLOWED_HOSTS lists the hosts the service answers to)"


def origin_refusal(method: str, headers: dict[str, str], allowed_origins: tuple[str, ...]) -> str | None:
    """Why a request is refused (403) for where a browser says it comes from, or None: a
    state-changing request from a foreign or `null` origin, or one a browser marks as another
    site's without an Origin. `headers`: lower-case names to values."""
    if method.upper() in SAFE_METHODS:
        return None
    origin = headers.get("origin")
    if origin is not None:
        if origin_is_allowed(origin, headers.get("host"), allowed_origins):
            return None
        return (
            f"origin {origin!r} is not allowed to change anything: only the service's own origin and"
            " those in WFM_ALLOWED_ORIGINS are"
        )
    site = headers.get("sec-fetch-site", "").strip().lower()
    if site in FOREIGN_FETCH_SITES:
        return f"a {site} request (Sec-Fetch-Site) without an Origin is not allowed to change anything"
    return None


def is_preflight(method: str, headers: dict[str, str]) -> bool:
    """A CORS preflight: OPTIONS with an Origin and Access-Control-Request-Method."""
    return method == "OPTIONS" and "origin" in headers and "access-control-request-method" in headers


def _headers(scope) -> dict[str, str]:
    """The request's headers by lower-case name; a repeated header's values joined with ", " (as
    HTTP combines them), so that two `Host` or `Origin` headers match no allowed value."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers") or []:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


class BrowserGuardMiddleware:
    """Refuses foreign `Host`s and state-changing requests from foreign origins (403, before the
    app runs) and answers CORS for `allowed_origins` only. See the module docstring."""

    def __init__(self, app, allowed_hosts: tuple[str, ...] | None, allowed_origins: tuple[str, ...]):
        self.app = app
        self.allowed_hosts = allowed_hosts
        self.allowed_origins = tuple(normalized_origin(origin) for origin in allowed_origins)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        method = scope["method"]
        origin = headers.get("origin")
        listed = is_listed_origin(origin, self.allowed_origins)
        message = host_refusal(headers.get("host"), self.allowed_hosts)
        if message is None and is_preflight(method, headers):
            if listed:
                await self._send_preflight(send, origin)
                return
            message = f"origin {origin!r} is not allowed to make cross-origin requests (WFM_ALLOWED_ORIGINS)"
        if message is None:
            message = origin_refusal(method, headers, self.allowed_origins)
        if message is not None:
            await send_json_error(send, 403, message)
            return
        if not listed:
            await self.app(scope, receive, send)
            return
        cors_headers = _cors_headers(origin)

        async def send_with_cors(event):
            if event["type"] == "http.response.start":
                event = {**event, "headers": [*event.get("headers", []), *cors_headers]}
            await send(event)

        await self.app(scope, receive, send_with_cors)

    async def _send_preflight(self, send, origin: str) -> None:
        headers = [
            *_cors_headers(origin),
            (b"access-control-allow-methods", CORS_ALLOW_METHODS.encode()),
            (b"access-control-allow-headers", CORS_ALLOW_HEADERS.encode()),
            (b"access-control-max-age", str(CORS_MAX_AGE_SECONDS).encode()),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


def _cors_headers(origin: str) -> list[tuple[bytes, bytes]]:
    # The origin as the browser sent it: it compares Access-Control-Allow-Origin with its own
    # serialization. Vary: a cache must not hand this answer to another origin.
    return [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-expose-headers", CORS_EXPOSE_HEADERS.encode()),
        (b"vary", b"Origin"),
    ]
