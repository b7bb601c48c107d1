"""The store contract: one suite, run against every store implementation (the reference's shared
store suite, notes 5.6, including its removed listing and paging cases)."""

from __future__ import annotations

import base64
import json
import os
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from store.interface import WorkflowQuery
from store.memory import MemoryStore
from workflow_manager.domain.errors import (
    ConcurrentModification,
    Conflict,
    InvalidInput,
    NotFound,
    TerminalStatusGuard,
)
from workflow_manager.domain.models import (
    Job,
    JobAttempt,
    JobStatus,
    StartClaim,
    StateResource,
    StateResourceType,
    Workflow,
    WorkflowDefinition,
    WorkflowStatus,
    new_id,
    utc_now,
)

FIXTURES = Path(__file__).parent / "fixtures"
SFN_PAYLOAD_LIMIT = 256 * 1024  # bytes of a Step Functions input or output


@pytest.fixture(params=["memory", "dynamodb"])
def store(request):
    if request.param == "memory":
        return MemoryStore()
    if request.param == "dynamodb":
        return request.getfixturevalue("dynamodb").store()
    raise AssertionError(request.param)


def kitchensink(name: str | None = None) -> WorkflowDefinition:
    state_machine = json.loads((FIXTURES / "definitions" / "kitchensink.json").read_text())
    return WorkflowDefinition(
        name=name or f"kitchensink-{new_id()}",
        state_machine=state_machine.get("stateMachine", state_machine),
        default_tags={"tag1": "val1", "tag2": "val2", "tag3": "val3"},
    )


def new_workflow(definition: WorkflowDefinition, **fields) -> Workflow:
    return Workflow(
        id=new_id(),
        workflow_definition=definition,
        namespace="namespace",
        queue="queue",
        input='["input"]',
        tags={"team": "infra"},
        **fields,
    )


def close_to_now(value) -> bool:
    return abs(utc_now() - value) < timedelta(seconds=5)


# Definitions


def test_get_workflow_definitions_lists_the_latest_version_of_each_name(store):
    first, second = kitchensink(), kitchensink()
    store.save_workflow_definition(first)
    store.save_workflow_definition(second)
    store.update_workflow_definition(second.copy())
    listed = {(d.name, d.version) for d in store.get_workflow_definitions()}
    assert listed == {(first.name, 0), (second.name, 1)}


def test_update_workflow_definition_saves_the_next_version(store):
    definition = kitchensink()
    store.save_workflow_definition(definition)
    latest = store.latest_workflow_definition(definition.name)
    assert latest.version == 0
    assert latest.start_at == "start-state"
    assert close_to_now(latest.created_at)

    changed = latest.copy()
    changed.state_machine["Comment"] = "changed"
    updated = store.update_workflow_definition(changed)
    assert updated.version == 1
    assert updated.state_machine["Comment"] == "changed"
    assert updated.created_at > latest.created_at

    again = store.latest_workflow_definition(definition.name)
    assert again.version == 1
    assert again.created_at == updated.created_at
    assert [d.version for d in store.get_workflow_definition_versions(definition.name)] == [0, 1]


def test_update_of_unknown_definition_is_not_found(store):
    with pytest.raises(NotFound):
        store.update_workflow_definition(kitchensink("nobody-saved-this"))


def test_get_workflow_definition_by_name_and_version(store):
    definition = kitchensink()
    store.save_workflow_definition(definition)
    found = store.get_workflow_definition(definition.name, 0)
    assert (found.name, found.version) == (definition.name, 0)
    assert close_to_now(found.created_at)
    with pytest.raises(NotFound, match="doesntexist@1"):
        store.get_workflow_definition("doesntexist", 1)
    with pytest.raises(NotFound):
        store.get_workflow_definition(definition.name, 1)


def test_saving_an_existing_definition_version_is_a_conflict(store):
    definition = kitchensink()
    store.save_workflow_definition(definition)
    with pytest.raises(Conflict):
        store.save_workflow_definition(definition)
    assert store.latest_workflow_definition(definition.name).version == 0


def test_concurrent_updates_of_a_definition_never_overwrite_a_version(store):
    definition = kitchensink()
    store.save_workflow_definition(definition)
    results, errors = [], []

    def update(comment: str) -> None:
        changed = definition.copy()
        changed.state_machine["Comment"] = comment
        try:
            results.append(store.update_workflow_definition(changed))
        except Conflict as err:
            errors.append(err)

    threads = [threading.Thread(target=update, args=(f"c{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    versions = store.get_workflow_definition_versions(definition.name)
    assert len(versions) == 1 + len(results)
    assert sorted(r.version for r in results) == list(range(1, 1 + len(results)))
    for saved in results:
        stored = store.get_workflow_definition(definition.name, saved.version)
        assert stored.state_machine["Comment"] == saved.state_machine["Comment"]


# State resources


def test_state_resources_save_get_delete(store):
    resource = StateResource(
        name="name", namespace="namespace", uri="arn:activity", type=StateResourceType.ACTIVITY_ARN
    )
    store.save_state_resource(resource)
    found = store.get_state_resource("namespace", "name")
    assert (found.name, found.namespace, found.uri) == ("name", "namespace", "arn:activity")
    assert close_to_now(found.last_updated)

    store.save_state_resource(StateResource(name="name", namespace="namespace", uri="arn:other"))
    assert store.get_state_resource("namespace", "name").uri == "arn:other"

    with pytest.raises(NotFound):
        store.get_state_resource("nope", "doesntexist")
    store.delete_state_resource("namespace", "name")
    with pytest.raises(NotFound):
        store.get_state_resource("namespace", "name")
    with pytest.raises(NotFound):
        store.delete_state_resource("namespace", "name")


# Workflows


def test_save_and_get_workflow(store):
    definition = kitchensink()
    store.save_workflow_definition(definition)
    workflow = new_workflow(definition)
    store.save_workflow(workflow)
    found = store.get_workflow(workflow.id)
    assert found.input == '["input"]'
    assert found.status == WorkflowStatus.QUEUED
    assert (found.namespace, found.queue, found.tags) == ("namespace", "queue", {"team": "infra"})
    assert close_to_now(found.created_at)
    assert found.created_at == found.last_updated
    assert found.workflow_definition.name == definition.name
    assert found.retries == [] and found.jobs == []


def test_a_start_claim_is_kept_until_an_update_clears_it(store):
    definition = kitchensink()
    store.save_workflow_definition(definition)
    workflow = new_workflow(definition)
    claim = StartClaim(owner="attempt-1", expires_at=utc_now() + timedelta(seconds=60))
    workflow.start_claim = claim
    store.save_workflow(workflow)
    found = store.get_workflow(workflow.id)
    assert found.start_claim.owner == "attempt-1"
    assert abs(found.start_claim.expires_at - claim.expires_at) < timedelta(milliseconds=1)
    found.start_claim = None
    store.update_workflow(found)
    assert store.get_workflow(workflow.id).start_claim is None


def test_saving_a_duplicate_workflow_id_is_a_conflict(store):
    workflow = new_workflow(kitchensink())
    store.save_workflow(workflow)
    with pytest.raises(Conflict):
        store.save_workflow(new_workflow(kitchensink()).__class__(**{**vars(workflow)}))


def test_update_workflow_bumps_last_updated(store):
    workflow = new_workflow(kitchensink())
    store.save_workflow(workflow)
    found = store.get_workflow(workflow.id)
    found.status = WorkflowStatus.SUCCEEDED
    store.update_workflow(found)
    again = store.get_workflow(workflow.id)
    assert again.status == WorkflowStatus.SUCCEEDED
    assert close_to_now(again.created_at) and close_to_now(again.last_updated)
    assert again.last_updated > again.created_at


def test_update_of_unknown_workflow_is_not_found(store):
    with pytest.raises(NotFound):
        store.update_workflow(new_workflow(kitchensink()))


def test_a_stale_update_is_rejected_not_silently_applied(store):
    workflow = new_workflow(kitchensink())
    store.save_workflow(workflow)
    first, second = store.get_workflow(workflow.id), store.get_workflow(workflow.id)
    first.status_reason = "first writer"
    store.update_workflow(first)
    second.status_reason = "second writer"
    with pytest.raises(ConcurrentModification):
        store.update_workflow(second)
    assert store.get_workflow(workflow.id).status_reason == "first writer"


def test_a_terminal_status_never_moves_back(store):
    workflow = new_workflow(kitchensink())
    store.save_workflow(workflow)
    found = store.get_workflow(workflow.id)
    found.status = WorkflowStatus.SUCCEEDED
    store.update_workflow(found)
    found.status = WorkflowStatus.RUNNING
    with pytest.raises(TerminalStatusGuard):
        store.update_workflow(found)
    assert store.get_workflow(workflow.id).status == WorkflowStatus.SUCCEEDED


def test_a_large_workflow_round_trips_with_every_job(store):
    workflow = new_workflow(kitchensink())
    store.save_workflow(workflow)
    found = store.get_workflow(workflow.id)
    found.jobs = [
        Job(id=str(i), state=f"state-{i}", status=JobStatus.SUCCEEDED, input="x" * 100) for i in range(4000)
    ]
    found.status = WorkflowStatus.SUCCEEDED
    store.update_workflow(found)
    again = store.get_workflow(workflow.id)
    assert again.status == WorkflowStatus.SUCCEEDED
    assert len(again.jobs) == 4000
    assert again.jobs[3999].state == "state-3999"


def test_delete_workflow(store):
    workflow = new_workflow(kitchensink())
    store.save_workflow(workflow)
    store.delete_workflow(workflow.id)
    with pytest.raises(NotFound):
        store.get_workflow(workflow.id)
    with pytest.raises(NotFound):
        store.delete_workflow(workflow.id)


def test_active_workflow_ids_are_the_non_terminal_ones(store):
    definition = kitchensink()
    running, done = new_workflow(definition), new_workflow(definition)
    store.save_workflow(running)
    store.save_workflow(done)
    found = store.get_workflow(done.id)
    found.status = WorkflowStatus.FAILED
    store.update_workflow(found)
    assert set(store.list_active_workflow_ids()) >= {running.id}
    assert done.id not in store.list_active_workflow_ids()


def test_a_finished_workflow_whose_jobs_are_pending_stays_active_until_they_are_read(store):
    workflow = new_workflow(kitchensink())
    store.save_workflow(workflow)
    found = store.get_workflow(workflow.id)
    found.status = WorkflowStatus.SUCCEEDED
    found.jobs_pending = True
    store.update_workflow(found)
    found = store.get_workflow(workflow.id)
    assert found.jobs_pending is True
    assert workflow.id in store.list_active_workflow_ids()
    found.jobs_pending = False
    store.update_workflow(found)
    assert store.get_workflow(workflow.id).jobs_pending is False
    assert workflow.id not in store.list_active_workflow_ids()


# Listing (the reference's removed GetWorkflows cases)


def _save_with_status(store, definition, status, resolved):
    workflow = new_workflow(definition)
    store.save_workflow(workflow)
    found = store.get_workflow(workflow.id)
    found.status = status
    found.resolved_by_user = resolved
    store.update_workflow(found)
    return found


@pytest.fixture
def four_workflows(store):
    definition = kitchensink()
    other = kitchensink()
    created = [
        _save_with_status(store, definition, WorkflowStatus.RUNNING, False),
        _save_with_status(store, definition, WorkflowStatus.RUNNING, True),
        _save_with_status(store, definition, WorkflowStatus.FAILED, False),
        _save_with_status(store, definition, WorkflowStatus.FAILED, True),
    ]
    _save_with_status(store, other, WorkflowStatus.RUNNING, False)
    return definition, created


def _all_pages(store, name: str, **query) -> list:
    """Every page of a listing, following the page tokens until the store issues none."""
    pages, token = [], ""
    while True:
        page = store.list_workflows(WorkflowQuery(name, page_token=token, **query))
        pages.append(page)
        token = page.next_page_token
        if not token:
            return pages


def _ids(page):
    return [wf.id for wf in page.workflows]


def test_list_filters_by_name_newest_first(store, four_workflows):
    definition, created = four_workflows
    page = store.list_workflows(WorkflowQuery(definition.name, limit=10))
    assert _ids(page) == [wf.id for wf in reversed(created)]
    assert page.next_page_token == ""


def test_list_filters_by_status_and_resolved(store, four_workflows):
    definition, created = four_workflows
    query = WorkflowQuery(definition.name, status=WorkflowStatus.RUNNING)
    assert set(_ids(store.list_workflows(query))) == {created[0].id, created[1].id}
    query = WorkflowQuery(definition.name, resolved_by_user=False)
    assert set(_ids(store.list_workflows(query))) == {created[0].id, created[2].id}
    query = WorkflowQuery(definition.name, resolved_by_user=True)
    assert set(_ids(store.list_workflows(query))) == {created[1].id, created[3].id}
    query = WorkflowQuery(definition.name, status=WorkflowStatus.FAILED, resolved_by_user=True)
    assert _ids(store.list_workflows(query)) == [created[3].id]


def test_list_pages_one_at_a_time_in_both_orders(store, four_workflows):
    definition, created = four_workflows
    for oldest_first, expected in ((False, [created[1], created[0]]), (True, created[:2])):
        pages = _all_pages(
            store, definition.name, limit=1, status=WorkflowStatus.RUNNING, oldest_first=oldest_first
        )
        assert all(len(page.workflows) == 1 for page in pages[:-1])
        assert [wf_id for page in pages for wf_id in _ids(page)] == [wf.id for wf in expected]


def test_list_with_an_invalid_page_token_is_invalid_input(store, four_workflows):
    definition, _ = four_workflows
    for token in ("invalid token", "e30", "bm90IGpzb24"):
        with pytest.raises(InvalidInput, match="invalid page token"):
            store.list_workflows(WorkflowQuery(definition.name, page_token=token))


def test_a_summary_listing_carries_no_jobs(store):
    definition = kitchensink()
    workflow = new_workflow(definition)
    store.save_workflow(workflow)
    workflow.jobs = [Job(id="1", state="start-state", status=JobStatus.RUNNING)]
    store.update_workflow(workflow)
    [summary] = store.list_workflows(WorkflowQuery(definition.name, summary_only=True)).workflows
    assert summary.id == workflow.id and summary.jobs == []
    assert summary.workflow_definition.name == definition.name
    [full] = store.list_workflows(WorkflowQuery(definition.name)).workflows
    assert [job.id for job in full.jobs] == ["1"]


def test_list_of_unknown_name_is_empty(store):
    page = store.list_workflows(WorkflowQuery("nothing-here"))
    assert page.workflows == [] and page.next_page_token == ""


def test_paging_through_250_workflows_in_both_orders_with_each_filter(store):
    definition = kitchensink()
    statuses = [WorkflowStatus.RUNNING, WorkflowStatus.FAILED, WorkflowStatus.SUCCEEDED]
    created = [_save_with_status(store, definition, statuses[i % 3], i % 2 == 0) for i in range(250)]
    filters = [
        {},
        {"status": WorkflowStatus.FAILED},
        {"resolved_by_user": False},
        {"status": WorkflowStatus.RUNNING, "resolved_by_user": True},
    ]
    for extra in filters:
        expected = [
            wf.id
            for wf in created
            if ("status" not in extra or wf.status == extra["status"])
            and ("resolved_by_user" not in extra or wf.resolved_by_user == extra["resolved_by_user"])
        ]
        for oldest_first in (False, True):
            pages = _all_pages(store, definition.name, limit=30, oldest_first=oldest_first, **extra)
            seen = [wf_id for page in pages for wf_id in _ids(page)]
            assert seen == (expected if oldest_first else list(reversed(expected)))


def _job_with_payload(index: int, size: int) -> Job:
    # Hex of random bytes: JSON text that compresses about as well as real payloads (2:1), not 100:1.
    return Job(
        id=f"job-{index}",
        state=f"state-{index}",
        status=JobStatus.SUCCEEDED,
        input=json.dumps({"index": index, "data": os.urandom(size // 2).hex()}),
        output=json.dumps({"index": index, "result": os.urandom(size // 2).hex()}),
        attempts=[JobAttempt(reason="retried", exit_code=1)],
        state_resource=StateResource(name="echo", namespace="namespace", uri="arn:activity"),
    )


def test_a_workflow_of_5000_jobs_of_a_few_kb_each_round_trips_whole(store):
    workflow = new_workflow(kitchensink())
    store.save_workflow(workflow)
    found = store.get_workflow(workflow.id)
    found.jobs = [_job_with_payload(i, 2048) for i in range(5000)]
    found.status = WorkflowStatus.RUNNING
    store.update_workflow(found)
    again = store.get_workflow(workflow.id)
    assert again.jobs == found.jobs
    assert again.revision == found.revision

    # The next update changes one job and drops the last hundred: every other job is kept as it was.
    again.jobs[10].status = JobStatus.FAILED
    again.jobs = again.jobs[:4900]
    again.status = WorkflowStatus.FAILED
    store.update_workflow(again)
    final = store.get_workflow(workflow.id)
    assert len(final.jobs) == 4900
    assert final.jobs[10].status == JobStatus.FAILED
    assert final.jobs[:10] == found.jobs[:10] and final.jobs[11:] == found.jobs[11:4900]


def test_a_workflow_at_the_step_functions_payload_limits_round_trips(store):
    # 256 KiB inputs and outputs (the Step Functions limit) that do not compress: no single item
    # of any store may pass DynamoDB's 400 KB.
    workflow = new_workflow(kitchensink())
    workflow.input = json.dumps(
        {"data": base64.b64encode(os.urandom(SFN_PAYLOAD_LIMIT * 3 // 4 - 64)).decode()}
    )
    store.save_workflow(workflow)
    found = store.get_workflow(workflow.id)
    assert found.input == workflow.input
    big_job = _job_with_payload(0, SFN_PAYLOAD_LIMIT - 64)
    found.jobs = [big_job, _job_with_payload(1, 100)]
    found.last_job = big_job
    found.output = big_job.output
    found.status = WorkflowStatus.SUCCEEDED
    store.update_workflow(found)
    again = store.get_workflow(workflow.id)
    assert again.jobs == found.jobs
    assert again.last_job == big_job and again.output == big_job.output and again.input == workflow.input
    summary = store.list_workflows(WorkflowQuery(workflow.workflow_definition.name, summary_only=True))
    assert [wf.input for wf in summary.workflows] == [workflow.input]


def test_a_saved_definition_version_is_never_overwritten_by_another_save(store):
    definition = kitchensink()
    store.save_workflow_definition(definition)
    other = definition.copy()
    other.state_machine["Comment"] = "other"
    with pytest.raises(Conflict):
        store.save_workflow_definition(other)
    assert store.get_workflow_definition(definition.name, 0).state_machine["Comment"] != "other"


# Leases


def test_a_lease_has_one_holder_until_it_expires_or_is_released(store):
    name = f"lease-{new_id()}"
    assert store.acquire_lease(name, "replica-a", timedelta(seconds=30)) is True
    assert store.acquire_lease(name, "replica-b", timedelta(seconds=30)) is False
    assert store.acquire_lease(name, "replica-a", timedelta(seconds=30)) is True  # renewed
    store.release_lease(name, "replica-b")  # not b's: nothing happens
    assert store.acquire_lease(name, "replica-b", timedelta(seconds=30)) is False
    store.release_lease(name, "replica-a")
    assert store.acquire_lease(name, "replica-b", timedelta(seconds=30)) is True
    assert store.acquire_lease(name, "replica-a", timedelta(seconds=30)) is False


def test_an_expired_lease_is_taken_over(store):
    name = f"lease-{new_id()}"
    assert store.acquire_lease(name, "replica-a", timedelta(milliseconds=1)) is True
    # The DynamoDB store keeps expiries in whole seconds (its TTL attribute).
    wait_until = utc_now() + timedelta(seconds=2.1)
    while utc_now() < wait_until:
        threading.Event().wait(0.1)
    assert store.acquire_lease(name, "replica-b", timedelta(seconds=30)) is True
    assert store.acquire_lease(name, "replica-a", timedelta(seconds=30)) is False


def test_of_concurrent_acquirers_exactly_one_holds_the_lease(store):
    name = f"lease-{new_id()}"
    results: dict[str, bool] = {}
    barrier = threading.Barrier(8)

    def acquire(owner: str) -> None:
        barrier.wait()
        results[owner] = store.acquire_lease(name, owner, timedelta(seconds=30))

    threads = [threading.Thread(target=acquire, args=(f"replica-{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results.values()) == [False] * 7 + [True]


def test_members_count_until_their_heartbeat_expires_or_they_leave(store):
    group = f"group-{new_id()}"
    assert store.heartbeat(group, "a", timedelta(seconds=30)) == 1
    assert store.heartbeat(group, "b", timedelta(seconds=30)) == 2
    assert store.heartbeat(group, "c", timedelta(seconds=1)) == 3
    assert store.heartbeat(group, "a", timedelta(seconds=30)) == 3  # a beat again: still three
    store.leave(group, "b")
    assert store.heartbeat(group, "a", timedelta(seconds=30)) == 2
    wait_until = utc_now() + timedelta(seconds=2.1)  # c's heartbeat runs out (whole seconds)
    while utc_now() < wait_until:
        threading.Event().wait(0.1)
    assert store.heartbeat(group, "a", timedelta(seconds=30)) == 1
