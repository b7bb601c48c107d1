"""The Batch plan: the reference's toposort, ordering over Next edges and Parallel branches, Pass
pass-through, resume subsets, and the limits Batch puts on a job."""

from __future__ import annotations

import copy

import pytest

from executor.batch_plan import (
    CYCLE_MESSAGE,
    MAX_BATCH_ATTEMPTS,
    MAX_JOB_DEPENDENCIES,
    final_jobs,
    job_attempts,
    job_timeout_seconds,
    plan_jobs,
    toposort,
    validate_batch_definition,
)
from tests.conftest import DATA, load_fixture
from workflow_manager.domain.errors import InvalidInput


def task(next_state: str | None = None, **fields) -> dict:
    state = {"Type": "Task", "Resource": "job", **fields}
    if next_state is None:
        state["End"] = True
    else:
        state["Next"] = next_state
    return state


def planned(state_machine: dict, start_at: str | None = None) -> list[tuple[str, list[str]]]:
    return [(job.state_name, job.depends_on) for job in plan_jobs(state_machine, start_at)]


# The reference's toposort cases (toposort/toposort_test.go), waves and order within them included.


@pytest.mark.parametrize(
    ("dependencies", "waves"),
    [
        ({}, []),
        ({"a": []}, [["a"]]),
        ({"a": ["b", "c"], "b": ["c"], "c": []}, [["c"], ["b"], ["a"]]),
        ({"e": ["d", "c"], "d": ["a", "b"], "a": [], "c": [], "b": []}, [["a", "b"], ["d", "c"], ["e"]]),
        (
            {
                "e": ["d", "c", "f"],
                "d": ["a", "b"],
                "a": [],
                "c": [],
                "b": ["c"],
                "f": ["g"],
                "g": ["h"],
                "h": [],
            },
            [["c", "h"], ["a", "b", "g"], ["d", "f"], ["e"]],
        ),
    ],
    ids=["no-inputs", "no-dependencies", "simple", "parallel-deps", "complex-parallel-deps"],
)
def test_toposort_matches_the_reference_cases(dependencies, waves):
    assert toposort(dependencies) == waves


@pytest.mark.parametrize(
    "dependencies",
    [{"a": ["b"], "b": ["a"]}, {"a": ["b"], "b": ["c"], "c": ["a"]}],
    ids=["small-cycle", "longer-cycle"],
)
def test_toposort_rejects_a_cycle(dependencies):
    with pytest.raises(InvalidInput, match=CYCLE_MESSAGE):
        toposort(dependencies)


# Ordering over the state machine


def test_chain_of_tasks_runs_in_next_order():
    state_machine = {"StartAt": "a", "States": {"a": task("b"), "b": task("c"), "c": task()}}
    assert planned(state_machine) == [("a", []), ("b", ["a"]), ("c", ["b"])]


def test_parallel_branches_fan_out_from_the_state_before_and_fan_in_to_the_state_after():
    state_machine = load_fixture("definitions", "batch-pipeline.json")
    assert planned(state_machine) == [
        ("extract", []),
        ("transform-a", ["extract"]),
        ("transform-b", ["extract"]),
        ("load", ["transform-a", "transform-b"]),
    ]


def test_pass_states_are_not_jobs_and_dependencies_pass_through_them():
    state_machine = {
        "StartAt": "begin",
        "States": {
            "begin": {"Type": "Pass", "Next": "a"},
            "a": task("between"),
            "between": {"Type": "Pass", "Result": {"ignored": True}, "Next": "b"},
            "b": task("end"),
            "end": {"Type": "Succeed"},
        },
    }
    assert planned(state_machine) == [("a", []), ("b", ["a"])]


def test_a_branch_without_tasks_passes_the_dependency_before_the_parallel_through():
    state_machine = {
        "StartAt": "a",
        "States": {
            "a": task("fork"),
            "fork": {
                "Type": "Parallel",
                "Branches": [
                    {"StartAt": "b", "States": {"b": task()}},
                    {"StartAt": "skip", "States": {"skip": {"Type": "Pass", "End": True}}},
                ],
                "Next": "c",
            },
            "c": task(),
        },
    }
    assert planned(state_machine) == [("a", []), ("b", ["a"]), ("c", ["b", "a"])]


def test_nested_parallels_and_branch_chains_depend_on_the_last_job_of_each_branch():
    state_machine = {
        "StartAt": "outer",
        "States": {
            "outer": {
                "Type": "Parallel",
                "Branches": [
                    {"StartAt": "a1", "States": {"a1": task("a2"), "a2": task()}},
                    {
                        "StartAt": "inner",
                        "States": {
                            "inner": {
                                "Type": "Parallel",
                                "Branches": [
                                    {"StartAt": "b", "States": {"b": task()}},
                                    {"StartAt": "c", "States": {"c": task()}},
                                ],
                                "End": True,
                            }
                        },
                    },
                ],
                "Next": "join",
            },
            "join": task(),
        },
    }
    plan = planned(state_machine)
    assert dict(plan) == {"a1": [], "a2": ["a1"], "b": [], "c": [], "join": ["a2", "b", "c"]}
    order = [name for name, _ in plan]
    assert order.index("a1") < order.index("a2") < order.index("join")
    assert order[-1] == "join"


def test_every_job_is_submitted_after_its_dependencies():
    state_machine = load_fixture("batch", "pipeline.json")
    seen: set[str] = set()
    for job in plan_jobs(state_machine):
        assert set(job.depends_on) <= seen, job.state_name
        seen.add(job.state_name)
    assert seen == {"checkout", "build-a", "build-b", "package", "publish"}


def test_final_jobs_are_the_jobs_nothing_depends_on():
    plan = plan_jobs(load_fixture("definitions", "batch-pipeline.json"))
    assert final_jobs(plan) == ["load"]


# Resume


def test_plan_from_a_later_state_has_only_the_jobs_reachable_from_it():
    state_machine = load_fixture("batch", "pipeline.json")
    assert planned(state_machine, start_at="package") == [("package", []), ("publish", ["package"])]


def test_plan_from_a_parallel_state_starts_its_branches_without_dependencies():
    state_machine = load_fixture("batch", "pipeline.json")
    assert planned(state_machine, start_at="build") == [
        ("build-a", []),
        ("build-b", []),
        ("package", ["build-a", "build-b"]),
        ("publish", ["package"]),
    ]


def test_plan_from_an_unknown_state_is_rejected():
    with pytest.raises(InvalidInput, match="State nowhere not found"):
        plan_jobs(load_fixture("batch", "pipeline.json"), start_at="nowhere")


# Limits and rejections


def fan_in(branches: int) -> dict:
    return {
        "StartAt": "fork",
        "States": {
            "fork": {
                "Type": "Parallel",
                "Branches": [{"StartAt": f"b{i}", "States": {f"b{i}": task()}} for i in range(branches)],
                "Next": "join",
            },
            "join": task(),
        },
    }


def test_a_job_may_have_twenty_dependencies():
    plan = plan_jobs(fan_in(MAX_JOB_DEPENDENCIES))
    assert len(plan[-1].depends_on) == MAX_JOB_DEPENDENCIES == 20
    validate_batch_definition(fan_in(MAX_JOB_DEPENDENCIES))


def test_a_job_with_more_than_twenty_dependencies_is_rejected_naming_the_state():
    with pytest.raises(InvalidInput) as raised:
        validate_batch_definition(fan_in(MAX_JOB_DEPENDENCIES + 1))
    assert raised.value.message == (
        "state 'join' depends on 21 jobs; AWS Batch allows at most 20 dependencies per job"
    )


def test_a_next_cycle_is_rejected():
    state_machine = {"StartAt": "a", "States": {"a": task("b"), "b": {"Type": "Pass", "Next": "a"}}}
    with pytest.raises(InvalidInput, match=CYCLE_MESSAGE):
        plan_jobs(state_machine)


def test_a_choice_state_is_rejected_naming_it():
    state_machine = load_fixture("definitions", "batch-choice-in-parallel.json")
    with pytest.raises(InvalidInput, match="state 'prepare-b' has type Choice"):
        plan_jobs(state_machine)


def test_a_catch_is_rejected_naming_the_state():
    state_machine = {
        "StartAt": "a",
        "States": {"a": task(Catch=[{"ErrorEquals": ["States.ALL"], "Next": "handler"}]), "handler": task()},
    }
    with pytest.raises(InvalidInput, match="state 'a' has a Catch"):
        validate_batch_definition(state_machine)


def test_a_definition_without_tasks_is_rejected():
    state_machine = {"StartAt": "p", "States": {"p": {"Type": "Pass", "End": True}}}
    with pytest.raises(InvalidInput, match="at least one Task state"):
        validate_batch_definition(state_machine)


def test_the_data_example_is_a_valid_batch_definition():
    import json

    definition = json.loads((DATA / "build-pipeline.post.json").read_text())
    assert definition["manager"] == "batch"
    validate_batch_definition(definition["stateMachine"])
    assert planned(definition["stateMachine"]) == [
        ("checkout", []),
        ("build-frontend", ["checkout"]),
        ("build-backend", ["checkout"]),
        ("package", ["build-frontend", "build-backend"]),
        ("publish", ["package"]),
    ]


def test_validation_does_not_change_the_definition():
    state_machine = load_fixture("batch", "pipeline.json")
    before = copy.deepcopy(state_machine)
    validate_batch_definition(state_machine)
    assert state_machine == before


# Attempts and timeouts


@pytest.mark.parametrize(
    ("retry", "attempts"),
    [
        (None, None),
        ([], None),
        ([{"ErrorEquals": ["States.ALL"], "MaxAttempts": 0}], 1),
        ([{"ErrorEquals": ["States.ALL"], "MaxAttempts": 2}], 3),
        ([{"ErrorEquals": ["States.ALL"]}], 4),  # States Language default: 3 retries
        ([{"ErrorEquals": ["A"], "MaxAttempts": 1}, {"ErrorEquals": ["B"], "MaxAttempts": 4}], 5),
        ([{"ErrorEquals": ["States.ALL"], "MaxAttempts": 50}], MAX_BATCH_ATTEMPTS),
    ],
)
def test_retry_max_attempts_become_batch_attempts(retry, attempts):
    state = task() if retry is None else task(Retry=retry)
    assert job_attempts("s", state) == attempts


def test_negative_max_attempts_is_rejected():
    with pytest.raises(InvalidInput, match="MaxAttempts of state 's'"):
        job_attempts("s", task(Retry=[{"ErrorEquals": ["States.ALL"], "MaxAttempts": -1}]))


@pytest.mark.parametrize(("timeout", "seconds"), [(None, None), (60, 60), (3600, 3600)])
def test_timeout_seconds_become_the_attempt_duration(timeout, seconds):
    state = task() if timeout is None else task(TimeoutSeconds=timeout)
    assert job_timeout_seconds("s", state) == seconds


def test_timeout_below_the_batch_minimum_is_rejected_naming_the_state():
    with pytest.raises(InvalidInput) as raised:
        validate_batch_definition({"StartAt": "s", "States": {"s": task(TimeoutSeconds=30)}})
    assert raised.value.message == (
        "TimeoutSeconds of state 's' is 30; AWS Batch's minimum job timeout is 60 seconds"
    )
