"""The DynamoDB store itself: definitions, workflows (with their jobs as items of their own) and
state resources, with the semantics of `store.interface`. The layout and its reasons are in the
package docstring."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

import botocore.config
import botocore.session
from botocore.exceptions import BotoCoreError, ClientError
from pynamodb.exceptions import DoesNotExist, PynamoDBException, TableDoesNotExist
from pynamodb.models import Model

from store.clock import MonotonicClock
from store.dynamodb.codec import (
    ACTIVE_SHARDS,
    MAX_JOBS,
    PART_BYTES,
    ManifestEntry,
    active_shard,
    created_key,
    doc_part_key,
    flag,
    job_key,
    manifest_from_json,
    manifest_to_json,
    new_token,
    pack,
    split_parts,
    start_claim_from_json,
    start_claim_to_json,
    unpack,
)
from store.dynamodb.retry import RetryPolicy, describe_error, is_transient, store_error_code
from store.dynamodb.tables import DEFAULT_PREFIX, create_table, define_tables
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
from workflow_manager.domain.status import is_active, moves_back_from_terminal

log = logging.getLogger(__name__)

LEASE_KEY_PREFIX = "lease#"
LEASE_PART = "lease"

DEFAULT_RETENTION = timedelta(days=30)  # the reference's `_ttl`: createdAt + 30 days

# How often a read starts over when concurrent writes keep superseding what it is reading.
READ_ATTEMPTS = 5
# Threads that load whole workflows for a full (not summaryOnly) listing page.
LISTING_LOAD_THREADS = 8

_CONDITION_FAILED = "ConditionalCheckFailedException"


_T = TypeVar("_T")


class _ConditionFailed(Exception):
    """A conditional write's condition did not hold (translated by the caller)."""


class _Superseded(Exception):
    """An item a read needed was superseded by a concurrent write; the read starts over."""


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
        # For the wiring, which hooks its calls into the service's metrics.
        self.aws_client = client
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
            if self._call(f"create table {model.Meta.table_name}", create_table, model):
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
                code = store_error_code(err)
                if code == _CONDITION_FAILED:
                    raise _ConditionFailed(what) from err
                if code == "ResourceNotFoundException" or isinstance(err, TableDoesNotExist):
                    raise BackendUnavailable(
                        f"DynamoDB {what}: table missing ({describe_error(err)}); run `workflow-manager init-tables`"
                    ) from err
                if not is_transient(err):
                    raise BackendError(f"DynamoDB {what} failed: {describe_error(err)}") from err
                last = err
            if attempt < self._retry.attempts:
                time.sleep(self._retry.delay(attempt))
        raise BackendUnavailable(
            f"DynamoDB {what} failed after {self._retry.attempts} attempts: {describe_error(last)}"
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
        doc = pack(dump_definition(definition))
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
        token = new_token()
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
        return sorted((load_definition(unpack(item.doc)) for item in items), key=lambda d: d.name)

    def get_workflow_definition_versions(self, name: str) -> list[WorkflowDefinition]:
        items = self._query(
            "list workflow definition versions",
            lambda: self._tables.definitions.query(name, consistent_read=True),
        )
        if not items:
            raise NotFound(name)
        return [load_definition(unpack(item.doc)) for item in items]

    def get_workflow_definition(self, name: str, version: int) -> WorkflowDefinition:
        item = self._get(self._tables.definitions, name, version)
        if item is None:
            raise NotFound(f"{name}@{version}")
        return load_definition(unpack(item.doc))

    def latest_workflow_definition(self, name: str) -> WorkflowDefinition:
        items = self._query(
            "get latest workflow definition",
            lambda: self._tables.definitions.query(
                name, consistent_read=True, scan_index_forward=False, limit=1
            ),
        )
        if not items:
            raise NotFound(name)
        return load_definition(unpack(items[0].doc))

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

    # Leases: an item of the jobs table under a key no workflow has (workflow ids are UUIDs), its
    # owner in `payload` and its expiry in the TTL attribute, so that DynamoDB also removes a lease
    # its holder never released. One conditional put takes or renews it.

    def acquire_lease(self, name: str, owner: str, duration: timedelta) -> bool:
        table = self._tables.jobs
        now = self._clock.now()
        item = table(
            workflow_id=f"{LEASE_KEY_PREFIX}{name}",
            part=LEASE_PART,
            parts=1,
            payload=owner.encode(),
            expires=now + duration,
        )
        free_or_ours = (
            table.workflow_id.does_not_exist() | (table.expires < now) | (table.payload == owner.encode())
        )
        try:
            self._call(f"acquire lease {name}", item.save, condition=free_or_ours)
        except _ConditionFailed:
            return False
        return True

    def release_lease(self, name: str, owner: str) -> None:
        table = self._tables.jobs
        item = table(workflow_id=f"{LEASE_KEY_PREFIX}{name}", part=LEASE_PART)
        with contextlib.suppress(_ConditionFailed):  # not held by `owner` (any more)
            self._call(f"release lease {name}", item.delete, condition=table.payload == owner.encode())

    # Group membership: one item per member under the group's key in the jobs table, its expiry in
    # the TTL attribute; a heartbeat puts the member's item and reads the group back (one query).

    def heartbeat(self, group: str, member: str, ttl: timedelta) -> int:
        table = self._tables.jobs
        key = f"{LEASE_KEY_PREFIX}members#{group}"
        now = self._clock.now()
        item = table(workflow_id=key, part=member, parts=1, payload=b"1", expires=now + ttl)
        self._call(f"heartbeat of {group}", item.save)
        members = self._query(f"members of {group}", lambda: table.query(key, consistent_read=True))
        return sum(1 for found in members if found.expires is not None and found.expires > now)

    def leave(self, group: str, member: str) -> None:
        table = self._tables.jobs
        self._call(
            f"leave {group}", table(workflow_id=f"{LEASE_KEY_PREFIX}members#{group}", part=member).delete
        )

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
        token = new_token()
        expires = created_at + self._retention
        jobs_table = self._tables.jobs
        old_manifest = manifest_from_json(previous[1].get("jobs")) if previous else []

        # (2) job items for the jobs that changed, under this write's token.
        manifest: list[ManifestEntry] = []
        fresh: list[Model] = []
        for index, job in enumerate(workflow.jobs):
            raw = json.dumps(dump_job(job), separators=(",", ":"), sort_keys=True).encode()
            digest = hashlib.blake2b(raw, digest_size=8).hexdigest()
            if index < len(old_manifest) and old_manifest[index].digest == digest:
                manifest.append(old_manifest[index])
                continue
            parts = split_parts(zlib.compress(raw))
            manifest.append(ManifestEntry(token, digest, len(parts)))
            fresh.extend(
                jobs_table(
                    workflow_id=workflow.id,
                    part=job_key(index, token, number),
                    parts=len(parts),
                    payload=payload,
                    expires=expires,
                )
                for number, payload in enumerate(parts)
            )

        document = replace(workflow, jobs=[], created_at=created_at, last_updated=last_updated)
        doc_parts = split_parts(
            pack(
                {
                    "workflow": dump_workflow(document),
                    "jobs": manifest_to_json(manifest),
                    "startClaim": start_claim_to_json(workflow.start_claim),
                    "jobsPending": workflow.jobs_pending,
                }
            )
        )
        fresh.extend(
            jobs_table(
                workflow_id=workflow.id,
                part=doc_part_key(token, number),
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
        resolved = flag(workflow.resolved_by_user)
        item = self._tables.workflows(
            id=workflow.id,
            revision=revision,
            write_token=token,
            definition_name=name,
            status=status,
            resolved_by_user=workflow.resolved_by_user,
            created_at=format_time(created_at),
            last_updated=format_time(last_updated),
            created_key=created_key(created_at, workflow.id),
            hash_byName=name,
            hash_byNameStatus=f"{name}#{status}",
            hash_byNameResolved=f"{name}#{resolved}",
            hash_byNameStatusResolved=f"{name}#{status}#{resolved}",
            hash_activeShard=(active_shard(workflow.id) if is_active(workflow) else None),
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
                job_key(index, entry.token, number)
                for index, entry in enumerate(old_manifest)
                if index >= len(manifest) or manifest[index].token != entry.token
                for number in range(entry.parts)
            ]
            superseded.extend(
                doc_part_key(current.doc_token, number) for number in range(1, int(current.doc_parts))
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
        return unpack(payload)

    def _read_jobs(self, workflow_id: str, manifest: list[ManifestEntry]) -> list[Any]:
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
        workflow.start_claim = start_claim_from_json(document.get("startClaim"))
        workflow.jobs_pending = bool(document.get("jobsPending", False))
        if with_jobs:
            workflow.jobs = self._read_jobs(item.id, manifest_from_json(document.get("jobs")))
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
                after = created_key(parse_time(position["createdAt"]), position["id"])
            except (ValueError, OverflowError):
                # OverflowError: a time at the edge of datetime's range with an offset (year 1 at
                # +01:00) cannot be moved to UTC; no token the service issued holds one.
                raise InvalidInput(f"invalid page token: {query.page_token}") from None
        index, hash_value = self._tables.listing_indexes[
            (query.status is not None, query.resolved_by_user is not None)
        ]
        range_condition = None
        if after is not None:
            created = self._tables.workflows.created_key
            range_condition = created > after if query.oldest_first else created < after
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
