"""`make bench`: the DynamoDB store on the embedded emulator (moto, in this process, as in
`WFM_BACKEND=embedded WFM_STORE=dynamodb`).

Stores 10,000 workflows of one definition (statuses and resolvedByUser mixed), then times a listing
page of 100 (newest first; summaryOnly and full; no filter and each filter), a save and a get of a
workflow, and once each a save and a get of a workflow of 5,000 jobs of a few KB. Prints medians and
95th percentiles in milliseconds, and the machine it ran on.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import boto3

from store.dynamodb import DynamoDbStore
from store.interface import WorkflowQuery
from workflow_manager.domain.models import (
    Job,
    JobStatus,
    Workflow,
    WorkflowDefinition,
    WorkflowStatus,
    new_id,
)
from workflow_manager.emulator.server import emulator_client_kwargs, start_embedded_emulator

STATUSES = [WorkflowStatus.RUNNING, WorkflowStatus.FAILED, WorkflowStatus.SUCCEEDED, WorkflowStatus.QUEUED]
LOAD_THREADS = 4


def _definition() -> WorkflowDefinition:
    return WorkflowDefinition(
        name=f"bench-{new_id()[:8]}",
        state_machine={
            "StartAt": "work",
            "States": {"work": {"Type": "Task", "Resource": "echo", "End": True}},
        },
    )


def _workflow(definition: WorkflowDefinition, index: int) -> Workflow:
    return Workflow(
        id=new_id(),
        workflow_definition=definition,
        status=STATUSES[index % len(STATUSES)],
        resolved_by_user=index % 3 == 0,
        namespace="bench",
        input=json.dumps({"index": index, "payload": "x" * 200}),
        tags={"team": "bench"},
    )


def _timed(fn: Callable[[], object], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return times


def _row(label: str, times: list[float]) -> str:
    p95 = sorted(times)[max(0, round(len(times) * 0.95) - 1)]
    return f"{label:<66} {statistics.median(times):>9.1f} {p95:>9.1f} {len(times):>6}"


def _machine() -> str:
    memory = ""
    with contextlib.suppress(OSError, IndexError):
        memory = (
            subprocess.run(["free", "-h"], capture_output=True, text=True).stdout.splitlines()[1].split()[1]
        )
    cpu = ""
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "")
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs ({cpu or platform.machine()}), {memory or '?'} RAM,"
        f" Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--workflows", type=int, default=10_000)
    parser.add_argument("--page", type=int, default=100)
    parser.add_argument("--runs", type=int, default=20, help="timed runs of each listing")
    parser.add_argument("--single-runs", type=int, default=200, help="timed saves and gets")
    parser.add_argument("--jobs", type=int, default=5000, help="jobs of the large workflow (0: skip)")
    args = parser.parse_args(argv)

    emulator = start_embedded_emulator()
    try:
        store = DynamoDbStore(
            f"bench-{new_id()[:8]}", endpoint_url=emulator.endpoint_url, credentials=("testing", "testing")
        )
        store.create_tables()
        definition = _definition()
        store.save_workflow_definition(definition)

        start = time.perf_counter()
        with ThreadPoolExecutor(LOAD_THREADS) as pool:
            list(pool.map(lambda i: store.save_workflow(_workflow(definition, i)), range(args.workflows)))
        load_seconds = time.perf_counter() - start

        print(f"machine: {_machine()}")
        print(f"DynamoDB store on the embedded emulator (moto, in process): {emulator.endpoint_url}")
        print(
            f"loaded {args.workflows} workflows in {load_seconds:.1f} s"
            f" ({args.workflows / load_seconds:.0f}/s, {LOAD_THREADS} threads)"
        )
        print()
        print(f"{'operation':<66} {'p50 ms':>9} {'p95 ms':>9} {'runs':>6}")
        filters = {
            "no filter": {},
            "status=failed": {"status": WorkflowStatus.FAILED},
            "resolvedByUser=false": {"resolved_by_user": False},
            "status=running&resolvedByUser=true": {
                "status": WorkflowStatus.RUNNING,
                "resolved_by_user": True,
            },
        }
        for summary_only in (True, False):
            for label, extra in filters.items():
                query = WorkflowQuery(definition.name, limit=args.page, summary_only=summary_only, **extra)
                page = store.list_workflows(query)
                assert 0 < len(page.workflows) <= args.page, label
                kind = "summaryOnly" if summary_only else "full"
                print(
                    _row(
                        f"list page of {args.page}/{args.workflows}, {kind}, {label}",
                        _timed(lambda q=query: store.list_workflows(q), args.runs),
                    ),
                    flush=True,
                )
        # The emulator's own share: the same index Query through plain boto3, nothing decoded. moto
        # evaluates an index Query by walking every item of the table, so this grows with the table.
        raw = boto3.client("dynamodb", **emulator_client_kwargs(emulator.endpoint_url))
        for label, index, key in (
            ("no filter", "by-name", definition.name),
            ("status=failed", "by-name-status", f"{definition.name}#failed"),
        ):
            hash_attr = {"by-name": "byName", "by-name-status": "byNameStatus"}[index]

            def raw_query(index=index, key=key, hash_attr=hash_attr) -> None:
                raw.query(
                    TableName=f"{store.prefix}-workflows",
                    IndexName=index,
                    KeyConditionExpression=f"{hash_attr} = :key",
                    ExpressionAttributeValues={":key": {"S": key}},
                    ScanIndexForward=False,
                    Limit=args.page + 1,
                )

            print(
                _row(
                    f"  emulator alone: boto3 Query of {args.page + 1}, {label}", _timed(raw_query, args.runs)
                )
            )
        first = store.list_workflows(WorkflowQuery(definition.name, limit=args.page))
        second = WorkflowQuery(definition.name, limit=args.page, page_token=first.next_page_token)
        print(
            _row(
                f"list next page of {args.page} (page token), full",
                _timed(lambda: store.list_workflows(second), args.runs),
            )
        )

        saved: list[Workflow] = []

        def save() -> None:
            workflow = _workflow(definition, len(saved))
            store.save_workflow(workflow)
            saved.append(workflow)

        print(_row("save_workflow", _timed(save, args.single_runs)), flush=True)
        ids = iter([wf.id for wf in saved])
        print(
            _row("get_workflow", _timed(lambda: store.get_workflow(next(ids)), args.single_runs)), flush=True
        )
        to_update = iter(saved)

        def update() -> None:
            workflow = next(to_update)
            workflow.status_reason = "updated"
            store.update_workflow(workflow)

        print(_row("update_workflow", _timed(update, args.single_runs)), flush=True)

        if args.jobs:
            big = _workflow(definition, 1)
            big.jobs = [
                Job(
                    id=str(i),
                    state=f"state-{i}",
                    status=JobStatus.SUCCEEDED,
                    input=json.dumps({"data": os.urandom(1024).hex()}),
                    output=json.dumps({"result": os.urandom(1024).hex()}),
                )
                for i in range(args.jobs)
            ]
            print(
                _row(
                    f"save_workflow with {args.jobs} jobs of ~4 KB",
                    _timed(lambda: store.save_workflow(big), 1),
                )
            )
            print(
                _row(
                    f"get_workflow with {args.jobs} jobs of ~4 KB",
                    _timed(lambda: store.get_workflow(big.id), 1),
                )
            )
            big.jobs[0].status_reason = "changed"
            print(
                _row(
                    f"update_workflow with {args.jobs} jobs, one changed",
                    _timed(lambda: store.update_workflow(big), 1),
                )
            )
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
