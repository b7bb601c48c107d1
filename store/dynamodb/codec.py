"""How the DynamoDB store lays out its items: zlib-compressed JSON payloads, split into parts of at
most PART_BYTES (DynamoDB's 400 KB item limit), the sort keys of job and document parts, the listing
keys, and the jobs manifest (for each job, the token of its current item and a hash of its content).
Pure functions; see the package docstring for why the layout is what it is."""

from __future__ import annotations

import json
import uuid
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from workflow_manager.domain.models import StartClaim
from workflow_manager.domain.schemas import format_time, parse_time

# The payload bytes one item carries: leaves ~59 KB of DYNAMODB_ITEM_LIMIT for the keys and the small
# attributes (names under 80 characters, times, counts).
PART_BYTES = 350 * 1000
# Job indexes are zero-padded in the sort key so that items sort by index. Step Functions' 25,000
# history events bound a workflow to a few thousand jobs; six digits leave ample room.
JOB_INDEX_DIGITS = 6
MAX_JOBS = 10**JOB_INDEX_DIGITS - 1
# Shards of the sparse `active` index.
ACTIVE_SHARDS = 4


# Encoding of payloads.


def pack(value: Any) -> bytes:
    return zlib.compress(json.dumps(value, separators=(",", ":")).encode())


def unpack(payload: bytes) -> Any:
    return json.loads(zlib.decompress(payload))


def split_parts(payload: bytes) -> list[bytes]:
    return [payload[i : i + PART_BYTES] for i in range(0, len(payload), PART_BYTES)] or [b""]


def new_token() -> str:
    return uuid.uuid4().hex[:16]


def job_key(index: int, token: str, part: int = 0) -> str:
    return f"job#{index:0{JOB_INDEX_DIGITS}d}#{token}#{part:03d}"


def doc_part_key(token: str, part: int) -> str:
    return f"doc#{token}#{part:03d}"


def created_key(created_at: datetime, workflow_id: str) -> str:
    return f"{format_time(created_at)}#{workflow_id}"


def active_shard(workflow_id: str) -> str:
    return str(zlib.crc32(workflow_id.encode()) % ACTIVE_SHARDS)


def flag(value: bool) -> str:
    return "true" if value else "false"


# The jobs manifest: for each job, the token of its current item and a hash of its content.


@dataclass
class ManifestEntry:
    token: str
    digest: str
    parts: int = 1


def manifest_to_json(entries: list[ManifestEntry]) -> dict[str, Any]:
    # Compact: tokens once, then [token index, digest] per job, with a part count only when over one.
    tokens: dict[str, int] = {}
    rows = []
    for entry in entries:
        row: list[Any] = [tokens.setdefault(entry.token, len(tokens)), entry.digest]
        if entry.parts > 1:
            row.append(entry.parts)
        rows.append(row)
    return {"tokens": list(tokens), "jobs": rows}


def manifest_from_json(data: dict[str, Any] | None) -> list[ManifestEntry]:
    if not data:
        return []
    tokens = data["tokens"]
    return [ManifestEntry(tokens[row[0]], row[1], row[2] if len(row) > 2 else 1) for row in data["jobs"]]


# A workflow's start claim (not on the wire, so not in the workflow's wire JSON).


def start_claim_to_json(claim: StartClaim | None) -> dict[str, str] | None:
    if claim is None:
        return None
    return {"owner": claim.owner, "expiresAt": format_time(claim.expires_at)}


def start_claim_from_json(data: dict[str, str] | None) -> StartClaim | None:
    if not data:
        return None
    return StartClaim(owner=data["owner"], expires_at=parse_time(data["expiresAt"]))
