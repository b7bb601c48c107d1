"""The Swagger spec as the API serves it: the methods each path declares (for a 405's `Allow`), and
the one patch of Connexion that serving our spec needs."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import yaml

from workflow_manager.config import PROJECT_ROOT

SPEC_FILE = "swagger.yml"
SPEC_PATH = PROJECT_ROOT / SPEC_FILE
# The Connexion release `serve_raw_spec` patches (pinned in pyproject.toml): the patch replaces a
# private method, so another release must be checked before it is allowed.
CONNEXION_VERSION = "3.3.0"


class AllowedMethods:
    """The methods the spec declares for a request path, for the `Allow` header of a 405 (the
    router names only the methods of the first route that matched the path)."""

    def __init__(self, spec_path: Path):
        paths = yaml.safe_load(spec_path.read_text())["paths"]
        self._routes = [
            (
                re.compile("^" + re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template)) + "/?$"),
                sorted(method.upper() for method in operations if not method.startswith("x-")),
            )
            for template, operations in paths.items()
        ]

    def for_path(self, path: str) -> list[str]:
        return next((methods for pattern, methods in self._routes if pattern.match(path)), [])


def load_spec(with_security: bool = True) -> dict:
    """The spec as a document; without its `security` requirement when auth is off (the health
    route's own `security: []` is harmless either way)."""
    spec = yaml.safe_load(SPEC_PATH.read_text())
    if not with_security:
        spec.pop("security", None)
    return spec


def serve_raw_spec() -> None:
    """Connexion 3.3 serves /swagger.json with every $ref resolved inline, which loops forever on
    our recursive States Language models (spec-first/connexion#2095): serve the raw spec.
    Raises RuntimeError on a Connexion release other than CONNEXION_VERSION."""
    installed = importlib.metadata.version("connexion")
    if installed != CONNEXION_VERSION:
        raise RuntimeError(
            f"workflow_manager.api.spec patches connexion {CONNEXION_VERSION} internals but connexion"
            f" {installed} is installed"
        )
    from connexion.middleware import swagger_ui

    def raw_spec(self, request):
        spec = self.specification.with_base_path(self._base_path_for_prefix(request)).raw
        spec["basePath"] = spec.get("basePath") or "/"
        return spec

    swagger_ui.SwaggerUIAPI._spec_for_prefix = raw_spec
