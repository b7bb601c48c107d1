"""The DynamoDB store (pynamodb): all state in DynamoDB, so any number of stateless replicas can serve.

Modules: `store` (DynamoDbStore, the reads and conditional writes), `tables` (the pynamodb models and
indexes, table creation), `codec` (payload encoding, parts, item keys, the jobs manifest), `retry`
(backoff and which errors are transient).

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

from store.dynamodb.store import DynamoDbStore

__all__ = ["DynamoDbStore"]
