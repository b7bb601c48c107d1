"""The spec as the API serves it: the methods of each path, and the pinned Connexion patch."""

from __future__ import annotations

import pytest

from workflow_manager.api import spec
from workflow_manager.api.spec import SPEC_PATH, AllowedMethods


def test_allowed_methods_are_the_ones_the_spec_declares_for_the_path():
    allowed = AllowedMethods(SPEC_PATH)
    assert allowed.for_path("/workflows/abc") == ["DELETE", "GET", "POST"]
    assert allowed.for_path("/workflows/abc/") == ["DELETE", "GET", "POST"]
    assert allowed.for_path("/no-such-path") == []


def test_the_connexion_patch_refuses_another_connexion_release(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(spec.importlib.metadata, "version", lambda name: "3.4.0")

    with pytest.raises(RuntimeError, match=r"connexion 3\.3\.0 internals but connexion 3\.4\.0"):
        spec.serve_raw_spec()
