"""Opaque page tokens for workflow listings.

A token is URL-safe base64 of a small JSON object naming the position after which the next page
starts. Clients must treat it as opaque; anything that does not decode to the expected shape is an
InvalidInput ("invalid page token: ..."), so a token the service did not issue is a 400, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from workflow_manager.domain.errors import InvalidInput


def encode_page_token(position: dict[str, Any]) -> str:
    raw = json.dumps(position, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str, required_keys: frozenset[str]) -> dict[str, Any]:
    try:
        padded = token + "=" * (-len(token) % 4)
        position = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as err:
        raise InvalidInput(f"invalid page token: {token}") from err
    if not isinstance(position, dict) or not required_keys <= position.keys():
        raise InvalidInput(f"invalid page token: {token}")
    if not all(isinstance(position[key], str) for key in required_keys):
        raise InvalidInput(f"invalid page token: {token}")
    return position
