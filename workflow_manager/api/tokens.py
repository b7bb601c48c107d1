"""The tokens file (`WFM_AUTH_TOKENS_FILE`, YAML, CONTRACT 9.1) and the tokens in it:

    tokens:
      - name: ci-bot                           # who, as the audit log writes it
        sha256: "<hex sha256 of the token>"    # or `token: <plain>`, for development
        roles: [operator]                      # reader, operator, author, admin
        namespaces: [default, prd]             # optional: start/cancel/resume/resolve only there

`workflow-manager token create NAME --role ROLE` makes a token and prints its entry.

Pitfalls:
- Tokens are compared as sha256 digests with `hmac.compare_digest`, against every entry whether or
  not an earlier one matched, so the time a lookup takes says nothing about which token is close.
- The file is read again when it changes (checked at most every `RELOAD_SECONDS`), so a token can
  be added or revoked without a restart; a file that no longer parses keeps the tokens last read
  and logs an error, rather than locking everyone out or letting everyone in.
- A token is never logged: only its entry's name is.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from workflow_manager.domain.access import Principal, parse_roles

log = logging.getLogger(__name__)

# How often, at most, a request checks whether the tokens file changed.
RELOAD_SECONDS = 1.0
# Tokens `token create` makes: a recognisable prefix (so secret scanners and people can tell what
# leaked) and 32 random bytes.
TOKEN_PREFIX = "wfm_"
TOKEN_BYTES = 32
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class TokenFileError(ValueError):
    """The tokens file is missing or malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class TokenEntry:
    principal: Principal
    digest: bytes  # sha256 of the token


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def load_tokens(path: Path) -> list[TokenEntry]:
    """The entries of a tokens file (format in the module docstring). Raises TokenFileError."""
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as err:
        raise TokenFileError(f"{path}: cannot read the tokens file: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise TokenFileError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(document, dict) or not isinstance(document.get("tokens"), list):
        raise TokenFileError(f"{path}: expected `tokens:` with a list of entries")
    entries: list[TokenEntry] = []
    names: set[str] = set()
    for index, raw in enumerate(document["tokens"]):
        where = f"{path}: tokens[{index}]"
        entry = _entry(where, raw)
        if entry.principal.name in names:
            raise TokenFileError(f"{where}: the name {entry.principal.name!r} is used twice")
        if any(hmac.compare_digest(entry.digest, other.digest) for other in entries):
            raise TokenFileError(f"{where}: the same token as another entry")
        names.add(entry.principal.name)
        entries.append(entry)
    return entries


def _entry(where: str, raw: Any) -> TokenEntry:
    if not isinstance(raw, dict):
        raise TokenFileError(f"{where}: expected a mapping with name, sha256 (or token) and roles")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise TokenFileError(f"{where}: `name` is required (who, as the audit log writes it)")
    where = f"{where} ({name})"
    has_sha, has_plain = "sha256" in raw, "token" in raw
    if has_sha == has_plain:
        raise TokenFileError(f"{where}: give exactly one of `sha256` and `token`")
    if has_sha:
        hex_digest = str(raw["sha256"]).strip().lower()
        if not _SHA256_HEX.match(hex_digest):
            raise TokenFileError(f"{where}: `sha256` must be 64 hexadecimal characters")
        digest = bytes.fromhex(hex_digest)
    else:
        if not isinstance(raw["token"], str) or not raw["token"]:
            raise TokenFileError(f"{where}: `token` must be a non-empty string")
        digest = token_digest(raw["token"])
    roles_value = raw.get("roles")
    if not isinstance(roles_value, list) or not roles_value:
        raise TokenFileError(f"{where}: `roles` must be a list of at least one role")
    try:
        roles = parse_roles(roles_value)
    except ValueError as err:
        raise TokenFileError(f"{where}: {err}") from None
    namespaces = raw.get("namespaces")
    if namespaces is not None and (
        not isinstance(namespaces, list) or not all(isinstance(n, str) and n for n in namespaces)
    ):
        raise TokenFileError(f"{where}: `namespaces` must be a list of namespace names")
    principal = Principal(
        name=name, roles=roles, namespaces=frozenset(namespaces) if namespaces is not None else None
    )
    return TokenEntry(principal=principal, digest=digest)


class TokenRegistry:
    """The tokens of a tokens file, read again when the file changes."""

    def __init__(self, path: Path, reload_seconds: float = RELOAD_SECONDS):
        self._path = Path(path)
        self._reload_seconds = reload_seconds
        self._lock = threading.Lock()
        self._entries = load_tokens(self._path)  # a bad file at start-up stops the service
        self._stamp = self._file_stamp()
        self._checked_at = time.monotonic()
        log.info("auth: %d tokens from %s", len(self._entries), self._path)

    def __len__(self) -> int:
        return len(self._entries)

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            stat = os.stat(self._path)
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def _reload_if_changed(self) -> None:
        now = time.monotonic()
        if now - self._checked_at < self._reload_seconds:
            return
        with self._lock:
            if now - self._checked_at < self._reload_seconds:
                return
            self._checked_at = now
            stamp = self._file_stamp()
            if stamp == self._stamp:
                return
            try:
                entries = load_tokens(self._path)
            except TokenFileError as err:
                log.error("auth: keeping the %d tokens read before: %s", len(self._entries), err)
                return
            self._entries, self._stamp = entries, stamp
            log.info("auth: %d tokens from %s (reloaded)", len(entries), self._path)

    def principal_for(self, token: str) -> Principal | None:
        """The caller the token belongs to, or None. Constant time in where the match is."""
        self._reload_if_changed()
        digest = token_digest(token)
        found = None
        for entry in self._entries:
            if hmac.compare_digest(entry.digest, digest) and found is None:
                found = entry.principal
        return found


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def token_file_entry(name: str, token: str, roles: list[str], namespaces: list[str] | None) -> str:
    """The YAML entry of a token, with its sha256 (never the token itself), to add under `tokens:`."""
    entry: dict[str, Any] = {"name": name, "sha256": hashlib.sha256(token.encode()).hexdigest()}
    entry["roles"] = roles
    if namespaces:
        entry["namespaces"] = namespaces
    return yaml.safe_dump([entry], sort_keys=False, default_flow_style=None)
