"""The DynamoDB store's tables and indexes as pynamodb models, and their creation. pynamodb models
are classes bound to one table name and endpoint, so each store instance defines its own (two stores
with different prefixes coexist in one process). `deploy/dynamodb.cloudformation.yml` declares the
same tables (a test compares them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pynamodb.attributes import (
    BinaryAttribute,
    BooleanAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
)
from pynamodb.constants import PAY_PER_REQUEST_BILLING_MODE
from pynamodb.exceptions import TableError
from pynamodb.indexes import GlobalSecondaryIndex, IncludeProjection, KeysOnlyProjection
from pynamodb.models import Model

from store.dynamodb.codec import flag

DEFAULT_PREFIX = "workflow-manager"
# What each listing index projects: enough for a summaryOnly page without reading the table.
LISTING_PROJECTION = ["doc", "docParts", "docToken", "revision"]


@dataclass
class Tables:
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


def define_tables(prefix: str, connection: dict[str, Any]) -> Tables:
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

    listing_projection = IncludeProjection(LISTING_PROJECTION)
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

    return Tables(
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
                lambda q: f"{q.workflow_definition_name}#{flag(q.resolved_by_user)}",
            ),
            (True, True): (
                WorkflowItem.index_by_name_status_resolved,
                lambda q: f"{q.workflow_definition_name}#{q.status}#{flag(q.resolved_by_user)}",
            ),
        },
        active_index=WorkflowItem.index_active,
    )


def create_table(model: type[Model]) -> bool:
    if model.exists():
        return False
    try:
        model.create_table(wait=True, ignore_update_ttl_errors=True)
    except TableError as err:
        if err.cause_response_code == "ResourceInUseException":  # another process created it
            return False
        raise
    return True
