"""The DynamoDB store (pynamodb): all state in DynamoDB, so any number of stateless replicas can serve.

Same semantics as `store.memory` (the contract in `store.interface`, checked by the one suite in
`tests/test_store_contract.py`). Tables, named `{prefix}-...` (`WFM_DYNAMODB_PREFIX`), on-demand billing;
`deploy/dynamodb.cloudformation.yml` declares the same tables, and `workflow-manager init-tables` creates
them (`DynamoDbStore.create_tables`, idempotent):

- `{prefix}-workflow-definitions`: `name` + `version`; every saved version, immutable. The source of
  truth for versions: a conditional put (`attribute_not_exists`) decides who saves a version, so a
  version is never overwritten and of two racing "next version" writes one wins and one gets a 409.
- `{prefix}-latest-workflow-definitions`: `name`; a copy of the newest version, written after the
  version with a condition that it only moves forward (`version < :new`), and read only to list the
  definitions. Lookups of "the latest version" query the versions table (newest first, one item), so a
  crash between the two writes never serves a stale latest version; the next save repairs the copy.
  (Not a TransactWriteItems: moto, our emulator, restores a whole-table snapshot when a transaction is
  cancelled, which loses concurrent writes to that table.)
- `{prefix}-workflows`: `id`; one item per workflow, the commit point of every workflow write. It holds
  `revision` (optimistic concurrency: each write is conditional on the revision it read), the listing
  keys, `ttl` (DynamoDB TTL, `created_at` + `WFM_WORKFLOW_RETENTION_DAYS`), and `doc`, the workflow's
  wire JSON (without its jobs) plus the jobs manifest, zlib-compressed.
  Global secondary indexes, one Query per listing the API offers (never a Scan), each ranged by
  `createdKey` = `createdAt#id` (ordered by creation, ties broken by id, and unique, so a page token is
  just the position of the last item); newest first is `ScanIndexForward=false`:
    `by-name` (`byName` = name), `by-name-status` (`name#status`), `by-name-resolved`
    (`name#true|false`), `by-name-status-resolved` (`name#status#true|false`); projection INCLUDE of
    the document, enough for `summaryOnly` without reading the table.
    `active` (`activeShard`, range `createdKey`, KEYS_ONLY): sparse, the attribute is present only
    while the status is queued or running; the background updater queries its few shards
    (`ACTIVE_SHARDS`, so that no one partition takes every active workflow's writes).
- `{prefix}-workflow-jobs`: `workflowId` + `part`; the jobs of each workflow as items of their own, so a
  workflow with thousands of jobs round-trips whole (the reference dropped the job list past 400 KB),
  and the overflow of a workflow document too large for its item.
- `{prefix}-state-resources`: `name` + `namespace` (the reference's keys).

Consistency of a workflow and its jobs. Job items are immutable: job `i` written by a write with token
`t` is `job#{i:06d}#{t}#{part:03d}`. The workflow item's manifest names, for each job, the token of its
current item and a hash of its content. A write (1) reads the workflow item (revision, status,
manifest), (2) writes an item for each job whose hash changed (unchanged jobs are not rewritten: the
background updater saves busy workflows often), under a fresh token, (3) puts the workflow item on the
condition that the revision is still the one read, and only then (4) deletes the items it superseded
(changed jobs' old items, jobs beyond a shrunken list, old document parts). A writer that loses the
race deletes only its own fresh items. A reader takes the workflow item, then reads the job items its
manifest names; a missing one means a newer write superseded it in between, and the read starts over.
So a reader never sees a mix of two writes, and a lost race never touches the winner's items. Items
left by a writer that died between (2) and (3) are never named by a manifest and expire by TTL.

Item size (`DYNAMODB_ITEM_LIMIT`, 400 KB). Payloads are zlib-compressed JSON in Binary attributes, and
any payload over `PART_BYTES` is split into parts, each an item of its own: a job's input and output can
each be 256 KiB (the Step Functions payload limit) and a workflow carries its input, output and last
job, so no one item grows past the limit however large the workflow. A workflow definition must fit one
item (compressed); a larger one is refused (400) rather than cut.

Errors: only `workflow_manager.domain.errors`. Throttling and transient errors (5xx, connection failures) are
retried inside the store with capped, jittered exponential backoff (`RetryPolicy`); botocore's own
retries are off so that every attempt is counted here. What still fails is a BackendUnavailable (503),
never a silent loss. A conditional write whose first attempt may have landed before a retry is checked
against its `writeToken`, so a retried write is not mistaken for a lost race.

Pitfalls. Listings read global secondary indexes, which DynamoDB keeps eventually consistent (a
workflow saved a moment ago may be missing from a listing; reads by id are consistent). Each listing
index projects the document, so a workflow's document is stored five times; its jobs are not projected.
One botocore client is shared by the store's models by setting pynamodb's `Connection._client` (pinned
pynamodb 6.1.0): pynamodb would otherwise build one client, from one new botocore session, per model.
`get_workflow_definitions` is a Scan of the latest-definitions table (one item per name, all returned).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import random
import time
import uuid
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

import botocore.config
import botocore.session
from botocore.exceptions import BotoCoreError, ClientError
from pynamodb.attributes import (
    BinaryAttribute,
    BooleanAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
)
from pynamodb.constants import PAY_PER_REQUEST_BILLING_MODE
from pynamodb.exceptions import DoesNotExist, PynamoDBException, TableDoesNotExist, TableError
from pynamodb.indexes import GlobalSecondaryIndex, IncludeProjection, KeysOnlyProjection
from pynamodb.models import Model

from store.clock import MonotonicClock
from store.interface import WorkflowPage, WorkflowQuery
from store.paging import decode_page_token, encode_page_token
from workflow_manager.domain.aws import DYNAMODB_BATCH_WRITE_MAX_ITEMS
from workflow_manager.domain.errors import (
    BackendError,
    BackendUnavailable,
    ConcurrentModification,
    Conflict,
    InvalidInput,
    NotFound,
    TerminalStatusGuard,
    WorkflowManagerError,
)
from workflow_manager.domain.models import StateResource, Workflow, WorkflowDefinition, WorkflowStatus
from workflow_manager.domain.schemas import (
    dump_definition,
    dump_job,
    dump_workflow,
    format_time,
    load_definition,
    load_job,
    load_workflow,
    parse_time,
)
from workflow_manager.domain.status import ACTIVE_WORKFLOW_STATUSES, moves_back_from_terminal

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "workflow-manager"
DEFAULT_RETENTION = timedelta(days=30)  # the reference's `_ttl`: createdAt + 30 days

# The payload bytes one item carries: leaves ~59 KB of DYNAMODB_ITEM_LIMIT for the keys and the small
# attributes (names under 80 characters, times, counts).
PART_BYTES = 350 * 1000
# Job indexes are zero-padded in the sort key so that items sort by index. Step Functions' 25,000
# history events bound a workflow to a few thousand jobs; six digits leave ample room.
JOB_INDEX_DIGITS = 6
MAX_JOBS = 10**JOB_INDEX_DIGITS - 1
# Shards of the sparse `active` index.
ACTIVE_SHARDS = 4
# How often a read starts over when concurrent writes keep superseding what it is reading.
READ_ATTEMPTS = 5
# Threads that load whole workflows for a full (not summaryOnly) listing page.
LISTING_LOAD_THREADS = 8

# Error codes that mean "try again later" (DynamoDB's throttling and server-side errors).
TRANSIENT_ERROR_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "TransactionInProgressException",
    }
)
_CONDITION_FAILED = "ConditionalCheckFailedException"

_LISTING_PROJECTION = ["doc", "docParts", "docToken", "revision"]

_T = TypeVar("_T")


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter, for throttling and transient errors."""

    attempts: int = 6
    base_seconds: float = 0.05
    cap_seconds: float = 1.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap_seconds, self.base_seconds * 2 ** (attempt - 1)))


class _ConditionFailed(Exception):
    """A conditional write's condition did not hold (translated by the caller)."""


class _Superseded(Exception):
    """An item a read needed was superseded by a concurrent write; the read starts over."""


# Encoding of payloads.


def _pack(value: Any) -> bytes:
    return zlib.compress(json.dumps(value, separators=(",", ":")).encode())


def _unpack(payload: bytes) -> Any:
    return json.loads(zlib.decompress(payload))


def _split(payload: bytes) -> list[bytes]:
    return [payload[i : i + PART_BYTES] for i in range(0, len(payload), PART_BYTES)] or [b""]


def _new_token() -> str:
    return uuid.uuid4().hex[:16]


def _job_key(index: int, token: str, part: int = 0) -> str:
    return f"job#{index:0{JOB_INDEX_DIGITS}d}#{token}#{part:03d}"


def _doc_part_key(token: str, part: int) -> str:
    return f"doc#{token}#{part:03d}"


def _created_key(created_at: datetime, workflow_id: str) -> str:
    return f"{format_time(created_at)}#{workflow_id}"


def _active_shard(workflow_id: str) -> str:
    return str(zlib.crc32(workflow_id.encode()) % ACTIVE_SHARDS)


def _flag(value: bool) -> str:
    return "true" if value else "false"


# Tables. pynamodb models are classes bound to one table name and endpoint, so each store instance
# defines its own (two stores with different prefixes coexist in one process).


@dataclass
class _Tables:
    definitions: type[Model]
    latest_definitions: type[Model]
    workflows: type[Model]
    jobs: type[Model]
    state_resources: type[Model]
    listing_indexes: dict[tuple[bool, bool], Any]
    active_index: Any

    def all(self) -> list[type[Model]]:
        return [
            self.definitions,
            self.latest_definitions,
            self.workflows,
            self.jobs,
            self.state_resources,
        ]


def _meta(table_name: str, connection: dict[str, Any]) -> type:
    return type(
        "Meta",
        (),
        {
            "table_name": table_name,
            "billing_mode": PAY_PER_REQUEST_BILLING_MODE,
            "max_retry_attempts": 0,  # the retries are the store's own (RetryPolicy)
            **connection,
        },
    )


def _index(index_name: str, hash_attr: str, projection: Any) -> type[GlobalSecondaryIndex]:
    python_name = "hash_" + hash_attr
    return type(
        f"Index_{hash_attr}",
        (GlobalSecondaryIndex,),
        {
            "Meta": type("Meta", (), {"index_name": index_name, "projection": projection}),
            python_name: UnicodeAttribute(hash_key=True, attr_name=hash_attr),
            "created_key": UnicodeAttribute(range_key=True, attr_name="createdKey"),
        },
    )


def define_tables(prefix: str, connection: dict[str, Any]) -> _Tables:
    """The store's tables as pynamodb models; `connection` holds the Meta connection settings
    (host, region, credentials, timeouts)."""

    class DefinitionVersion(Model):
        Meta = _meta(f"{prefix}-workflow-definitions", connection)
        name = UnicodeAttribute(hash_key=True)
        version = NumberAttribute(range_key=True)
        created_at = UnicodeAttribute(attr_name="createdAt")
        write_token = UnicodeAttribute(attr_name="writeToken")
        doc = BinaryAttribute(legacy_encoding=False)

    class LatestDefinition(Model):
        Meta = _meta(f"{prefix}-latest-workflow-definitions", connection)
        name = UnicodeAttribute(hash_key=True)
        version = NumberAttribute()
        created_at = UnicodeAttribute(attr_name="createdAt")
        write_token = UnicodeAttribute(attr_name="writeToken")
        doc = BinaryAttribute(legacy_encoding=False)

    listing_projection = IncludeProjection(_LISTING_PROJECTION)
    by_name = _index("by-name", "byName", listing_projection)
    by_name_status = _index("by-name-status", "byNameStatus", listing_projection)
    by_name_resolved = _index("by-name-resolved", "byNameResolved", listing_projection)
    by_name_status_resolved = _index("by-name-status-resolved", "byNameStatusResolved", listing_projection)
    active = _index("active", "activeShard", KeysOnlyProjection())

    class WorkflowItem(Model):
        Meta = _meta(f"{prefix}-workflows", connection)
        id = UnicodeAttribute(hash_key=True)
        revision = NumberAttribute()
        write_token = UnicodeAttribute(attr_name="writeToken")
        definition_name = UnicodeAttribute(attr_name="definitionName")
        status = UnicodeAttribute()
        resolved_by_user = BooleanAttribute(attr_name="resolvedByUser")
        created_at = UnicodeAttribute(attr_name="createdAt")
        last_updated = UnicodeAttribute(attr_name="lastUpdated")
        created_key = UnicodeAttribute(attr_name="createdKey")
        hash_byName = UnicodeAttribute(attr_name="byName")
        hash_byNameStatus = UnicodeAttribute(attr_name="byNameStatus")
        hash_byNameResolved = UnicodeAttribute(attr_name="byNameResolved")
        hash_byNameStatusResolved = UnicodeAttribute(attr_name="byNameStatusResolved")
        hash_activeShard = UnicodeAttribute(attr_name="activeShard", null=True)
        expires = TTLAttribute(attr_name="ttl")
        job_count = NumberAttribute(attr_name="jobCount")
        doc = BinaryAttribute(legacy_encoding=False)
        doc_parts = NumberAttribute(attr_name="docParts")
        doc_token = UnicodeAttribute(attr_name="docToken")

        index_by_name = by_name()
        index_by_name_status = by_name_status()
        index_by_name_resolved = by_name_resolved()
        index_by_name_status_resolved = by_name_status_resolved()
        index_active = active()

    class JobPart(Model):
        Meta = _meta(f"{prefix}-workflow-jobs", connection)
        workflow_id = UnicodeAttribute(hash_key=True, attr_name="workflowId")
        part = UnicodeAttribute(range_key=True)
        parts = NumberAttribute()
        payload = BinaryAttribute(legacy_encoding=False)
        expires = TTLAttribute(attr_name="ttl")

    class StateResourceItem(Model):
        Meta = _meta(f"{prefix}-state-resources", connection)
        name = UnicodeAttribute(hash_key=True)
        namespace = UnicodeAttribute(range_key=True)
        uri = UnicodeAttribute(null=True)
        type = UnicodeAttribute(null=True)
        last_updated = UnicodeAttribute(attr_name="lastUpdated", null=True)

    return _Tables(
        definitions=DefinitionVersion,
        latest_definitions=LatestDefinition,
        workflows=WorkflowItem,
        jobs=JobPart,
        state_resources=StateResourceItem,
        listing_indexes={
            (False, False): (WorkflowItem.index_by_name, lambda q: q.workflow_definition_name),
            (True, False): (
                WorkflowItem.index_by_name_status,
                lambda q: f"{q.workflow_definition_name}#{q.status}",
            ),
            (False, True): (
                WorkflowItem.index_by_name_resolved,
                lambda q: f"{q.workflow_definition_name}#{_flag(q.resolved_by_user)}",
            ),
            (True, True): (
                WorkflowItem.index_by_name_status_resolved,
                lambda q: f"{q.workflow_definition_name}#{q.status}#{_flag(q.resolved_by_user)}",
            ),
        },
        active_index=WorkflowItem.index_active,
    )


# The jobs manifest: for each job, the token of its current item and a hash of its content.


@dataclass
class _ManifestEntry:
    token: str
    digest: str
    parts: int = 1


def _manifest_to_json(entries: list[_ManifestEntry]) -> dict[str, Any]:
    # Compact: tokens once, then [token index, digest] per job, with a part count only when over one.
    tokens: dict[str, int] = {}
    rows = []
    for entry in entries:
        row: list[Any] = [tokens.setdefault(entry.token, len(tokens)), entry.digest]
        if entry.parts > 1:
            row.append(entry.parts)
        rows.append(row)
    return {"tokens": list(tokens), "jobs": rows}


def _manifest_from_json(data: dict[str, Any] | None) -> list[_ManifestEntry]:
    if not data:
        return []
    tokens = data["tokens"]
    return [_ManifestEntry(tokens[row[0]], row[1], row[2] if len(row) > 2 else 1) for row in data["jobs"]]


class DynamoDbStore:
    """The store on DynamoDB. `endpoint_url` None is AWS itself; credentials None is the standard
    credential chain."""

    def __init__(
        self,
        prefix: str = DEFAULT_PREFIX,
        *,
        region: str = "us-east-1",
        endpoint_url: str | None = None,
        credentials: tuple[str, str] | None = None,
        retention: timedelta = DEFAULT_RETENTION,
        retry: RetryPolicy | None = None,
        connect_timeout_seconds: float = 5,
        read_timeout_seconds: float = 10,
        botocore_session: botocore.session.Session | None = None,
    ) -> None:
        connection: dict[str, Any] = {"region": region, "host": endpoint_url}
        if credentials is not None:
            connection["aws_access_key_id"], connection["aws_secret_access_key"] = credentials
        self.prefix = prefix
        self._tables = define_tables(prefix, connection)
        # pynamodb gives every model class a botocore client of its own, each from a new botocore
        # session (~0.1 s to load the service model). One client serves all of this store's tables.
        session = botocore_session or botocore.session.get_session()
        keys = {}
        if credentials is not None:
            keys = {"aws_access_key_id": credentials[0], "aws_secret_access_key": credentials[1]}
        client = session.create_client(
            "dynamodb",
            region_name=region,
            endpoint_url=endpoint_url,
            config=botocore.config.Config(
                connect_timeout=connect_timeout_seconds,
                read_timeout=read_timeout_seconds,
                max_pool_connections=2 * LISTING_LOAD_THREADS,
                # One attempt per call: the retries are this store's (RetryPolicy).
                retries={"total_max_attempts": 1, "mode": "standard"},
            ),
            **keys,
        )
        for model in self._tables.all():
            model._get_connection().connection._client = client
        self._retention = retention
        self._retry = retry or RetryPolicy()
        self._clock = MonotonicClock()

    # Tables

    def table_names(self) -> list[str]:
        return [model.Meta.table_name for model in self._tables.all()]

    def create_tables(self) -> list[str]:
        """Create the tables that do not exist and switch TTL on; return the names created.
        Idempotent, and safe when several processes do it at once."""
        created = []
        for model in self._tables.all():
            if self._call(f"create table {model.Meta.table_name}", _create_table, model):
                created.append(model.Meta.table_name)
        for model in (self._tables.workflows, self._tables.jobs):
            self._call("enable TTL", self._ensure_ttl, model)
        return created

    @staticmethod
    def _ensure_ttl(model: type[Model]) -> None:
        client = model._get_connection().connection.client
        described = client.describe_time_to_live(TableName=model.Meta.table_name)
        if described["TimeToLiveDescription"].get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
            model.update_ttl(ignore_update_ttl_errors=False)

    def check_health(self) -> None:
        self._call("health check", self._tables.workflows.describe_table)

    # Calls, retries and errors

    def _call(self, what: str, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Run one DynamoDB operation: retry what is transient, translate the rest."""
        last: Exception | None = None
        for attempt in range(1, self._retry.attempts + 1):
            try:
                return fn(*args, **kwargs)
            except DoesNotExist:
                raise
            except (PynamoDBException, ClientError, BotoCoreError) as err:
                code = _error_code(err)
                if code == _CONDITION_FAILED:
                    raise _ConditionFailed(what) from err
                if code == "ResourceNotFoundException" or isinstance(err, TableDoesNotExist):
                    raise BackendUnavailable(
                        f"DynamoDB {what}: table missing ({_describe(err)}); run `workflow-manager init-tables`"
                    ) from err
                if not _is_transient(err):
                    raise BackendError(f"DynamoDB {what} failed: {_describe(err)}") from err
                last = err
            if attempt < self._retry.attempts:
                time.sleep(self._retry.delay(attempt))
        raise BackendUnavailable(
            f"DynamoDB {what} failed after {self._retry.attempts} attempts: {_describe(last)}"
        ) from last

    def _get(self, model: type[Model], hash_key: Any, range_key: Any = None, **kwargs: Any) -> Any:
        def get() -> Any:
            try:
                return model.get(hash_key, range_key, consistent_read=True, **kwargs)
            except DoesNotExist:
                return None

        return self._call(f"get from {model.Meta.table_name}", get)

    def _query(self, what: str, make: Callable[[], Iterable[_T]]) -> list[_T]:
        return self._call(what, lambda: list(make()))

    def _batch_write(self, model: type[Model], puts: list[Model], deletes: list[Model]) -> None:
        """BatchWriteItem in chunks of 25, resending unprocessed items with backoff until all land."""
        connection = model._get_connection()
        requests = [("put", item.serialize()) for item in puts] + [
            ("delete", item._get_keys()) for item in deletes
        ]
        for start in range(0, len(requests), DYNAMODB_BATCH_WRITE_MAX_ITEMS):
            chunk = requests[start : start + DYNAMODB_BATCH_WRITE_MAX_ITEMS]
            put_items = [body for kind, body in chunk if kind == "put"]
            delete_items = [body for kind, body in chunk if kind == "delete"]
            for attempt in range(1, self._retry.attempts + 1):
                data = self._call(
                    f"batch write to {model.Meta.table_name}",
                    connection.batch_write_item,
                    put_items=put_items or None,
                    delete_items=delete_items or None,
                )
                unprocessed = (data or {}).get("UnprocessedItems", {}).get(model.Meta.table_name)
                if not unprocessed:
                    break
                # Unprocessed items come back in wire form, which batch_write_item sends as it is.
                put_items = [r["PutRequest"]["Item"] for r in unprocessed if "PutRequest" in r]
                delete_items = [r["DeleteRequest"]["Key"] for r in unprocessed if "DeleteRequest" in r]
                if attempt == self._retry.attempts:
                    raise BackendUnavailable(
                        f"DynamoDB batch write to {model.Meta.table_name}: {len(unprocessed)} items"
                        f" unprocessed after {attempt} attempts"
                    )
                time.sleep(self._retry.delay(attempt))

    # Workflow definitions

    def _definition_items(self, definition: WorkflowDefinition, token: str) -> tuple[Model, Model]:
        doc = _pack(dump_definition(definition))
        if len(doc) > PART_BYTES:
            raise InvalidInput(
                f"workflow definition {definition.name} is too large to store: {len(doc)} bytes"
                f" compressed, over {PART_BYTES}"
            )
        fields = {
            "name": definition.name,
            "version": definition.version,
            "created_at": format_time(definition.created_at),
            "write_token": token,
            "doc": doc,
        }
        return self._tables.definitions(**fields), self._tables.latest_definitions(**fields)

    def _put_definition(self, definition: WorkflowDefinition, conflict_message: str) -> None:
        token = _new_token()
        version_item, latest_item = self._definition_items(definition, token)
        table = self._tables.definitions
        try:
            self._call(
                "save workflow definition",
                version_item.save,
                condition=table.name.does_not_exist() & table.version.does_not_exist(),
            )
        except _ConditionFailed:
            stored = self._get(table, definition.name, definition.version)
            if stored is None or stored.write_token != token:  # not our own retried write
                raise Conflict(conflict_message) from None
        latest = self._tables.latest_definitions
        with contextlib.suppress(_ConditionFailed):  # failed: a later version is already the latest
            self._call(
                "save latest workflow definition",
                latest_item.save,
                condition=latest.name.does_not_exist() | (latest.version < definition.version),
            )

    def save_workflow_definition(self, definition: WorkflowDefinition) -> WorkflowDefinition:
        stored = definition.copy()
        stored.created_at = self._clock.now()
        self._put_definition(stored, f"Already Exists: {definition.name}")
        return stored

    def update_workflow_definition(self, definition: WorkflowDefinition) -> WorkflowDefinition:
        latest = self.latest_workflow_definition(definition.name)
        stored = definition.copy()
        stored.version = latest.version + 1
        stored.created_at = self._clock.now(after=latest.created_at)
        self._put_definition(stored, f"Already Exists: {definition.name}@{stored.version}")
        return stored

    def get_workflow_definitions(self) -> list[WorkflowDefinition]:
        items = self._query("list workflow definitions", lambda: self._tables.latest_definitions.scan())
        return sorted((load_definition(_unpack(item.doc)) for item in items), key=lambda d: d.name)

    def get_workflow_definition_versions(self, name: str) -> list[WorkflowDefinition]:
        items = self._query(
            "list workflow definition versions",
            lambda: self._tables.definitions.query(name, consistent_read=True),
        )
        if not items:
            raise NotFound(name)
        return [load_definition(_unpack(item.doc)) for item in items]

    def get_workflow_definition(self, name: str, version: int) -> WorkflowDefinition:
        item = self._get(self._tables.definitions, name, version)
        if item is None:
            raise NotFound(f"{name}@{version}")
        return load_definition(_unpack(item.doc))

    def latest_workflow_definition(self, name: str) -> WorkflowDefinition:
        items = self._query(
            "get latest workflow definition",
            lambda: self._tables.definitions.query(
                name, consistent_read=True, scan_index_forward=False, limit=1
            ),
        )
        if not items:
            raise NotFound(name)
        return load_definition(_unpack(items[0].doc))

    # State resources

    def save_state_resource(self, resource: StateResource) -> StateResource:
        stored = StateResource(**vars(resource))
        stored.last_updated = self._clock.now()
        item = self._tables.state_resources(
            name=stored.name,
            namespace=stored.namespace,
            uri=stored.uri,
            type=str(stored.type),
            last_updated=format_time(stored.last_updated),
        )
        self._call("save state resource", item.save)
        return StateResource(**vars(stored))

    def get_state_resource(self, namespace: str, name: str) -> StateResource:
        item = self._get(self._tables.state_resources, name, namespace)
        if item is None:
            raise NotFound(f"{namespace}--{name}")
        return StateResource(
            name=item.name,
            namespace=item.namespace,
            uri=item.uri or "",
            type=item.type or "",
            last_updated=parse_time(item.last_updated) if item.last_updated else None,
        )

    def delete_state_resource(self, namespace: str, name: str) -> None:
        table = self._tables.state_resources
        try:
            self._call(
                "delete state resource",
                table(name=name, namespace=namespace).delete,
                condition=table.name.exists(),
            )
        except _ConditionFailed:
            raise NotFound(f"{namespace}--{name}") from None

    # Workflows: writing

    def save_workflow(self, workflow: Workflow) -> None:
        now = self._clock.now()
        table = self._tables.workflows
        self._write_workflow(
            workflow,
            created_at=now,
            last_updated=now,
            revision=1,
            previous=None,
            condition=table.id.does_not_exist(),
            on_condition_failed=lambda _current: Conflict(f"Already Exists: {workflow.id}"),
        )

    def update_workflow(self, workflow: Workflow) -> None:
        current = self._get(self._tables.workflows, workflow.id)
        if current is None:
            raise NotFound(workflow.id)
        self._check_update(workflow, current)
        try:
            previous = self._read_document(current)
        except _Superseded:
            raise ConcurrentModification(f"workflow {workflow.id} was changed concurrently") from None
        table = self._tables.workflows
        self._write_workflow(
            workflow,
            created_at=parse_time(current.created_at),
            last_updated=self._clock.now(after=parse_time(current.last_updated)),
            revision=int(current.revision) + 1,
            previous=(current, previous),
            condition=table.revision == int(current.revision),
            on_condition_failed=lambda now_stored: self._update_refusal(workflow, now_stored),
        )

    def _check_update(self, workflow: Workflow, current: Any) -> None:
        error = self._update_refusal(workflow, current)
        if error is not None:
            raise error

    def _update_refusal(self, workflow: Workflow, current: Any) -> WorkflowManagerError | None:
        if current is None:
            return NotFound(workflow.id)
        if int(current.revision) != workflow.revision:
            return ConcurrentModification(f"workflow {workflow.id} was changed concurrently")
        stored_status = WorkflowStatus(current.status)
        if moves_back_from_terminal(stored_status, workflow.status):
            return TerminalStatusGuard(
                f"cannot update workflow {workflow.id} from terminal status {stored_status}"
                f" to {workflow.status}"
            )
        return None

    def _write_workflow(
        self,
        workflow: Workflow,
        *,
        created_at: datetime,
        last_updated: datetime,
        revision: int,
        previous: tuple[Any, dict[str, Any]] | None,
        condition: Any,
        on_condition_failed: Callable[[Any], WorkflowManagerError | None],
    ) -> None:
        if len(workflow.jobs) > MAX_JOBS:
            raise InvalidInput(f"workflow {workflow.id} has {len(workflow.jobs)} jobs, over {MAX_JOBS}")
        token = _new_token()
        expires = created_at + self._retention
        jobs_table = self._tables.jobs
        old_manifest = _manifest_from_json(previous[1].get("jobs")) if previous else []

        # (2) job items for the jobs that changed, under this write's token.
        manifest: list[_ManifestEntry] = []
        fresh: list[Model] = []
        for index, job in enumerate(workflow.jobs):
            raw = json.dumps(dump_job(job), separators=(",", ":"), sort_keys=True).encode()
            digest = hashlib.blake2b(raw, digest_size=8).hexdigest()
            if index < len(old_manifest) and old_manifest[index].digest == digest:
                manifest.append(old_manifest[index])
                continue
            parts = _split(zlib.compress(raw))
            manifest.append(_ManifestEntry(token, digest, len(parts)))
            fresh.extend(
                jobs_table(
                    workflow_id=workflow.id,
                    part=_job_key(index, token, number),
                    parts=len(parts),
                    payload=payload,
                    expires=expires,
                )
                for number, payload in enumerate(parts)
            )

        document = replace(workflow, jobs=[], created_at=created_at, last_updated=last_updated)
        doc_parts = _split(_pack({"workflow": dump_workflow(document), "jobs": _manifest_to_json(manifest)}))
        fresh.extend(
            jobs_table(
                workflow_id=workflow.id,
                part=_doc_part_key(token, number),
                parts=len(doc_parts),
                payload=payload,
                expires=expires,
            )
            for number, payload in enumerate(doc_parts)
            if number > 0
        )
        self._batch_write(jobs_table, fresh, [])

        # (3) the commit point.
        name = workflow.workflow_definition.name
        status = str(workflow.status)
        resolved = _flag(workflow.resolved_by_user)
        item = self._tables.workflows(
            id=workflow.id,
            revision=revision,
            write_token=token,
            definition_name=name,
            status=status,
            resolved_by_user=workflow.resolved_by_user,
            created_at=format_time(created_at),
            last_updated=format_time(last_updated),
            created_key=_created_key(created_at, workflow.id),
            hash_byName=name,
            hash_byNameStatus=f"{name}#{status}",
            hash_byNameResolved=f"{name}#{resolved}",
            hash_byNameStatusResolved=f"{name}#{status}#{resolved}",
            hash_activeShard=(
                _active_shard(workflow.id) if workflow.status in ACTIVE_WORKFLOW_STATUSES else None
            ),
            expires=expires,
            job_count=len(workflow.jobs),
            doc=doc_parts[0],
            doc_parts=len(doc_parts),
            doc_token=token,
        )
        try:
            self._call("save workflow", item.save, condition=condition)
        except _ConditionFailed:
            stored = self._get(self._tables.workflows, workflow.id)
            if stored is None or stored.write_token != token:  # not our own retried write
                self._delete_quietly(fresh)
                error = on_condition_failed(stored)
                raise error or ConcurrentModification(
                    f"workflow {workflow.id} was changed concurrently"
                ) from None
        # On BackendUnavailable it is unknown whether the put landed: the fresh items stay (TTL
        # removes them if no manifest names them).

        # (4) what the committed write superseded.
        if previous is not None:
            current, _ = previous
            superseded = [
                _job_key(index, entry.token, number)
                for index, entry in enumerate(old_manifest)
                if index >= len(manifest) or manifest[index].token != entry.token
                for number in range(entry.parts)
            ]
            superseded.extend(
                _doc_part_key(current.doc_token, number) for number in range(1, int(current.doc_parts))
            )
            self._delete_superseded(workflow.id, superseded)

        workflow.created_at = created_at
        workflow.last_updated = last_updated
        workflow.revision = revision

    def _delete_superseded(self, workflow_id: str, keys: list[str]) -> None:
        """Delete the job items and document parts a committed write replaced. Best effort: what is
        left is named by no manifest and expires by TTL."""
        jobs_table = self._tables.jobs
        try:
            self._batch_write(jobs_table, [], [jobs_table(workflow_id=workflow_id, part=key) for key in keys])
        except WorkflowManagerError as err:
            log.warning("workflow %s: superseded items left for TTL: %s", workflow_id, err.message)

    def _delete_quietly(self, items: list[Model]) -> None:
        try:
            self._batch_write(self._tables.jobs, [], items)
        except WorkflowManagerError as err:
            log.warning("items of a lost write left for TTL: %s", err.message)

    def delete_workflow(self, workflow_id: str) -> None:
        table = self._tables.workflows
        try:
            self._call("delete workflow", table(id=workflow_id).delete, condition=table.id.exists())
        except _ConditionFailed:
            raise NotFound(workflow_id) from None
        items = self._query(
            "list workflow jobs",
            lambda: self._tables.jobs.query(workflow_id, attributes_to_get=["workflowId", "part"]),
        )
        try:
            self._batch_write(self._tables.jobs, [], items)
        except WorkflowManagerError as err:
            log.warning("workflow %s deleted, its jobs left for TTL: %s", workflow_id, err.message)

    # Workflows: reading

    def _read_document(self, item: Any) -> dict[str, Any]:
        """The workflow's document (wire JSON without jobs, and the jobs manifest)."""
        payload = item.doc
        parts = int(item.doc_parts)
        if parts > 1:
            jobs_table = self._tables.jobs
            rest = self._query(
                "read workflow document",
                lambda: jobs_table.query(
                    item.id,
                    jobs_table.part.startswith(f"doc#{item.doc_token}#"),
                    consistent_read=True,
                ),
            )
            if len(rest) != parts - 1:
                raise _Superseded(item.id)
            payload += b"".join(part.payload for part in rest)
        return _unpack(payload)

    def _read_jobs(self, workflow_id: str, manifest: list[_ManifestEntry]) -> list[Any]:
        if not manifest:
            return []
        jobs_table = self._tables.jobs
        items = self._query(
            "read workflow jobs",
            lambda: jobs_table.query(workflow_id, jobs_table.part.startswith("job#"), consistent_read=True),
        )
        found: dict[tuple[int, str], list[Any]] = {}
        for item in items:
            _, index, token, _part = item.part.split("#")
            found.setdefault((int(index), token), []).append(item)
        jobs = []
        for index, entry in enumerate(manifest):
            parts = found.get((index, entry.token))
            if not parts or len(parts) != int(parts[0].parts):
                raise _Superseded(workflow_id)
            raw = zlib.decompress(b"".join(part.payload for part in parts))
            jobs.append(load_job(json.loads(raw)))
        return jobs

    def _load(self, item: Any, with_jobs: bool) -> Workflow:
        document = self._read_document(item)
        workflow = load_workflow(document["workflow"])
        if with_jobs:
            workflow.jobs = self._read_jobs(item.id, _manifest_from_json(document.get("jobs")))
        if item.revision is not None:
            workflow.revision = int(item.revision)
        return workflow

    def get_workflow(self, workflow_id: str) -> Workflow:
        for _ in range(READ_ATTEMPTS):
            item = self._get(self._tables.workflows, workflow_id)
            if item is None:
                raise NotFound(workflow_id)
            try:
                return self._load(item, with_jobs=True)
            except _Superseded:
                continue
        raise BackendUnavailable(f"workflow {workflow_id} kept changing while it was read")

    def list_workflows(self, query: WorkflowQuery) -> WorkflowPage:
        after = None
        if query.page_token:
            position = decode_page_token(query.page_token, frozenset({"createdAt", "id"}))
            try:
                after = _created_key(parse_time(position["createdAt"]), position["id"])
            except ValueError:
                raise InvalidInput(f"invalid page token: {query.page_token}") from None
        index, hash_value = self._tables.listing_indexes[
            (query.status is not None, query.resolved_by_user is not None)
        ]
        range_condition = None
        if after is not None:
            created_key = self._tables.workflows.created_key
            range_condition = created_key > after if query.oldest_first else created_key < after
        wanted = query.limit + 1  # one more than a page says whether more remain
        items = self._query(
            "list workflows",
            lambda: index.query(
                hash_value(query),
                range_key_condition=range_condition,
                scan_index_forward=query.oldest_first,
                limit=wanted,
                page_size=wanted,
            ),
        )
        page, more = items[: query.limit], len(items) > query.limit
        workflows = self._load_listed(page, with_jobs=not query.summary_only)
        token = ""
        if more:
            created_at, workflow_id = page[-1].created_key.split("#", 1)
            token = encode_page_token({"createdAt": created_at, "id": workflow_id})
        return WorkflowPage(workflows=[wf for wf in workflows if wf is not None], next_page_token=token)

    def _load_listed(self, items: list[Any], with_jobs: bool) -> list[Workflow | None]:
        """Workflows from index items (the index projects the document). A summary needs nothing
        more; a full listing reads the jobs of the workflows that have some, in parallel."""

        def load(item: Any) -> Workflow | None:
            try:
                return self._load(item, with_jobs)
            except _Superseded:  # changed since the index was read: read it from the table
                try:
                    return self.get_workflow(item.id)
                except NotFound:
                    return None

        if not with_jobs or len(items) <= 1:
            return [load(item) for item in items]
        with ThreadPoolExecutor(max_workers=LISTING_LOAD_THREADS) as pool:
            return list(pool.map(load, items))

    def list_active_workflow_ids(self) -> list[str]:
        ids: list[str] = []
        index = self._tables.active_index
        for shard in range(ACTIVE_SHARDS):
            ids.extend(
                item.id for item in self._query("list active workflows", lambda s=shard: index.query(str(s)))
            )
        return ids


def _create_table(model: type[Model]) -> bool:
    if model.exists():
        return False
    try:
        model.create_table(wait=True, ignore_update_ttl_errors=True)
    except TableError as err:
        if err.cause_response_code == "ResourceInUseException":  # another process created it
            return False
        raise
    return True


def _error_code(err: Exception) -> str | None:
    if isinstance(err, PynamoDBException):
        return err.cause_response_code
    if isinstance(err, ClientError):
        return err.response.get("Error", {}).get("Code")
    return None


def _is_transient(err: Exception) -> bool:
    cause = err.cause if isinstance(err, PynamoDBException) else err
    if isinstance(cause, BotoCoreError):  # connection refused, reset, timed out
        return True
    return _error_code(err) in TRANSIENT_ERROR_CODES


def _describe(err: Exception | None) -> str:
    if err is None:
        return "no attempt made"
    code = _error_code(err)
    if code:
        message = err.cause_response_message if isinstance(err, PynamoDBException) else str(err)
        return f"{code}: {message}"
    if isinstance(err, PynamoDBException):
        return str(err.cause or err)
    return str(err)
