"""The browser rules (CONTRACT 9.1): the Host and Origin matching."""

from __future__ import annotations

import pytest

from workflow_manager.api.browser import host_is_allowed, origin_is_allowed, origin_refusal, split_host

FOREIGN_ORIGIN = "http://evil.example"


# The matching rules


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("localhost:8080", ("localhost", "8080")),
        ("localhost", ("localhost", None)),
        ("[::1]:8080", ("[::1]", "8080")),
        ("[::1]", ("[::1]", None)),
        ("::1", ("::1", None)),
    ],
)
def test_split_host(value, expected):
    assert split_host(value) == expected


@pytest.mark.parametrize(
    ("host", "allow_list", "allowed"),
    [
        ("localhost:8080", ("localhost:8080",), True),
        ("LocalHost:8080", ("localhost:8080",), True),
        ("localhost:8081", ("localhost:8080",), False),
        ("localhost", ("localhost:8080",), False),
        ("wfm.internal:9000", ("wfm.internal",), True),
        ("wfm.internal", ("wfm.internal",), True),
        ("wfm.internal.evil.example", ("wfm.internal",), False),
        ("[::1]:8080", ("[::1]:8080",), True),
        ("[::1]:8081", ("[::1]:8080",), False),
        ("localhost:8080, evil.example", ("localhost:8080",), False),
        (None, ("localhost:8080",), False),
        ("", ("localhost:8080",), False),
        ("evil.example", None, True),
        (None, None, True),
    ],
)
def test_host_is_allowed(host, allow_list, allowed):
    assert host_is_allowed(host, allow_list) is allowed


@pytest.mark.parametrize(
    ("origin", "host", "listed", "allowed"),
    [
        ("http://127.0.0.1:8080", "127.0.0.1:8080", (), True),
        ("https://wfm.example.com", "wfm.example.com", (), True),
        ("HTTP://WFM.example.com", "wfm.EXAMPLE.com", (), True),
        ("http://127.0.0.1:8081", "127.0.0.1:8080", (), False),
        ("http://localhost:8080", "127.0.0.1:8080", (), False),
        ("ftp://127.0.0.1:8080", "127.0.0.1:8080", (), False),
        ("127.0.0.1:8080", "127.0.0.1:8080", (), False),
        ("http://evil.example@127.0.0.1:8080", "127.0.0.1:8080", (), False),
        ("http://127.0.0.1:8080", None, (), False),
        ("http://console.example", "127.0.0.1:8080", ("http://console.example",), True),
        ("http://Console.example/", "127.0.0.1:8080", ("http://console.example",), True),
        ("https://console.example", "127.0.0.1:8080", ("http://console.example",), False),
        ("null", "127.0.0.1:8080", ("null",), False),
    ],
)
def test_origin_is_allowed(origin, host, listed, allowed):
    assert origin_is_allowed(origin, host, listed) is allowed


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "get"])
def test_safe_methods_are_never_refused_for_their_origin(method):
    headers = {"host": "127.0.0.1:8080", "origin": "null", "sec-fetch-site": "cross-site"}
    assert origin_refusal(method, headers, ()) is None


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_every_other_method_is_state_changing(method):
    assert origin_refusal(method, {"host": "127.0.0.1:8080", "origin": FOREIGN_ORIGIN}, ()) is not None
    assert origin_refusal(method, {"host": "127.0.0.1:8080", "sec-fetch-site": "Cross-Site"}, ()) is not None
    assert origin_refusal(method, {"host": "127.0.0.1:8080"}, ()) is None
