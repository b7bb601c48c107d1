"""`python -m bench.scale` (and `make bench`): the service at scale, as production runs it.

The standalone emulator (`workflow-manager emulator`) with AWS's API rates on
(`WFM_EMULATOR_QUOTAS=aws`), REPLICAS service processes (`workflow-manager serve`) sharing the
DynamoDB store in it, reading its events queue. WORKFLOWS workflows of one Wait state of WAIT
seconds are started together, spread over the replicas; then, once every one is recorded
succeeded, it prints against the goal of issue 10:

- status lag: from each execution's stop to the store recording its terminal status, as the replicas'
  `workflow_manager_store_lag_seconds` histograms tell it (added up; percentiles interpolated in
  the buckets, as Prometheus's histogram_quantile does, and the share within the goal exactly);
- jobs lag: each record's `lastUpdated` minus its `stoppedAt`, once no workflow has its jobs pending
  (the read of the jobs after the end is the record's last write);
- calls per second per budgeted AWS API, all replicas together (counted by the emulator), and the
  throttled calls.

`--workflows 10000` is the goal's size; the default is a quick run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from bench.__main__ import _machine
from store.interface import MAX_LIST_LIMIT
from workflow_manager.domain.aws import AWS_CALL_BUDGETS_PER_SECOND
from workflow_manager.emulator.quotas import CALLS_PATH

ROOT = Path(__file__).resolve().parent.parent
GOAL_STATUS_LAG_P95_SECONDS = 5.0
GOAL_JOBS_LAG_SECONDS = 60.0
LAG_BUCKET = "workflow_manager_store_lag_seconds_bucket"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _request(method: str, url: str, body: object = None, timeout: float = 30) -> object:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


def _wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(what)


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _metric_text(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
        return response.read().decode()


def _lag_buckets(texts: list[str], status: str) -> list[tuple[float, float]]:
    """The cumulative (upper bound, count) buckets of the store lag of `status`, over every text."""
    totals: dict[float, float] = {}
    for text in texts:
        for line in text.splitlines():
            if not line.startswith(LAG_BUCKET + "{") or f'status="{status}"' not in line:
                continue
            labels, value = line.rsplit(" ", 1)
            bound = labels.split('le="', 1)[1].split('"', 1)[0]
            upper = float("inf") if bound == "+Inf" else float(bound)
            totals[upper] = totals.get(upper, 0.0) + float(value)
    return sorted(totals.items())


def _bucket_quantile(buckets: list[tuple[float, float]], fraction: float) -> float:
    """Prometheus's histogram_quantile: linear within the bucket the rank falls in."""
    total = buckets[-1][1]
    rank = fraction * total
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if upper == float("inf"):
                return lower
            return lower + (upper - lower) * ((rank - below) / (count - below) if count > below else 0.0)
        lower, below = upper, count
    return lower


def _within(buckets: list[tuple[float, float]], seconds: float) -> float:
    return next((count for upper, count in buckets if upper == seconds), 0.0) / buckets[-1][1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale")
    parser.add_argument("--workflows", type=int, default=300, help=f"at most {MAX_LIST_LIMIT}")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--wait", type=int, default=20, help="seconds of each workflow's Wait state")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="wfm-scale-"))
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    base_env = {
        **os.environ,
        "WFM_EMULATOR_QUOTAS": "aws",
        "WFM_DYNAMODB_PREFIX": "scale",
        "WFM_LOG_LEVEL": "WARNING",
    }
    processes: list[subprocess.Popen] = []
    try:
        emulator = subprocess.Popen(
            [sys.executable, "-m", "workflow_manager.cli", "emulator", "--port", str(port)],
            cwd=ROOT,
            env={**base_env, "WFM_BATCH_JOB_DEFINITIONS_FILE": ""},
            stdout=subprocess.PIPE,
            stderr=open(work / "emulator.log", "w"),  # noqa: SIM115 - closed with the process
            text=True,
        )
        processes.append(emulator)
        emulator.stdout.readline()
        queue_url = emulator.stdout.readline().strip().rsplit(" ", 1)[-1]

        urls = []
        for index in range(args.replicas):
            service_port = _free_port()
            env = {
                **base_env,
                "WFM_BACKEND": "endpoint",
                "WFM_AWS_ENDPOINT": endpoint,
                "WFM_AWS_ACCOUNT_ID": "123456789012",
                "WFM_AUTH": "off",
                "WFM_STORE": "dynamodb",
                "WFM_DYNAMODB_CREATE_TABLES": "true",
                "WFM_EVENTS_QUEUE_URL": queue_url,
                "WFM_BATCH": "false",
                "WFM_WORKERS": "1",
                "WFM_PORT": str(service_port),
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
            }
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "workflow_manager.cli", "serve"],
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=open(work / f"replica-{index}.log", "w"),  # noqa: SIM115
                    start_new_session=True,
                )
            )
            urls.append(f"http://127.0.0.1:{service_port}")
            if index == 0:  # the first creates the tables; the others find them
                _wait_until(lambda u=urls[0]: _request("GET", f"{u}/_ready"), 60, "replica 0 to be ready")
        for url in urls:
            _wait_until(lambda u=url: _request("GET", f"{u}/_ready"), 60, f"{url} to be ready")

        name = "scale-wait"
        _request(
            "POST",
            f"{urls[0]}/workflow-definitions",
            {
                "name": name,
                "stateMachine": {
                    "StartAt": "nap",
                    "States": {"nap": {"Type": "Wait", "Seconds": args.wait, "End": True}},
                },
            },
        )
        began = time.monotonic()

        def start(index: int) -> str:
            url = urls[index % len(urls)]
            for _attempt in range(20):
                try:
                    return _request(
                        "POST",
                        f"{url}/workflows",
                        {"workflowDefinition": {"name": name}, "input": {"i": index}},
                    )["id"]
                except OSError:
                    time.sleep(1)
            raise RuntimeError(f"workflow {index} could not be started")

        with ThreadPoolExecutor(16) as pool:
            ids = set(pool.map(start, range(args.workflows)))
        started_seconds = time.monotonic() - began

        def all_succeeded():
            # One page holds them all (the listing's limit is MAX_LIST_LIMIT).
            page_url = (
                f"{urls[0]}/workflows?workflowDefinitionName={name}&status=succeeded&limit={MAX_LIST_LIMIT}"
            )
            done = [r for r in _request("GET", page_url) if r["id"] in ids]
            return done if len(done) == len(ids) else None

        _wait_until(all_succeeded, args.timeout, "every workflow to be recorded succeeded")
        elapsed = time.monotonic() - began
        lag_buckets = _lag_buckets([_metric_text(url) for url in urls], "succeeded")

        def no_jobs_pending() -> bool:
            return 'workflow_manager_workflows{status="jobs_pending"}' not in _metric_text(urls[0])

        _wait_until(no_jobs_pending, args.timeout, "every workflow's jobs to be read")
        finished = all_succeeded()
        jobs_elapsed = time.monotonic() - began
        counts = _request("GET", f"{endpoint}{CALLS_PATH}")
    finally:
        for process in reversed(processes):
            if process.poll() is not None:
                continue
            if process is processes[0]:
                process.terminate()  # the emulator
            else:
                os.killpg(process.pid, signal.SIGTERM)  # gunicorn and its worker
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()

    jobs_lags = [(_time(r["lastUpdated"]) - _time(r["stoppedAt"])).total_seconds() for r in finished]
    print(f"machine: {_machine()}")
    print(
        f"scale: {args.workflows} workflows of one {args.wait} s Wait state, {args.replicas} replicas"
        f" (gunicorn, 1 process each) on the DynamoDB store, the standalone emulator with AWS's API rates"
    )
    print(
        f"started all in {started_seconds:.1f} s; all recorded succeeded after {elapsed:.1f} s,"
        f" their jobs read after {jobs_elapsed:.1f} s"
    )
    print(
        f"status lag (store after execution end, {lag_buckets[-1][1]:.0f} observed):"
        f" p50 {_bucket_quantile(lag_buckets, 0.5):.2f} s, p95 {_bucket_quantile(lag_buckets, 0.95):.2f} s;"
        f" {100 * _within(lag_buckets, GOAL_STATUS_LAG_P95_SECONDS):.1f}% within"
        f" {GOAL_STATUS_LAG_P95_SECONDS:.0f} s (goal: p95 within {GOAL_STATUS_LAG_P95_SECONDS:.0f} s)"
    )
    print(
        f"jobs lag (jobs read after execution end): p50 {statistics.median(jobs_lags):.2f} s,"
        f" p95 {_percentile(jobs_lags, 0.95):.2f} s, max {max(jobs_lags):.2f} s"
        f" (goal: within {GOAL_JOBS_LAG_SECONDS:.0f} s)"
    )
    for (service, action), budget in AWS_CALL_BUDGETS_PER_SECOND.items():
        key = f"{'states' if service == 'stepfunctions' else service}:{action}"
        calls = counts["calls"].get(key, 0)
        print(
            f"{key}: {calls} calls, mean {calls / elapsed:.1f}/s over the run"
            f" (budget {budget:.0f}/s), throttled {counts['throttled'].get(key, 0)}"
        )
    others = {
        k: v
        for k, v in counts["calls"].items()
        if k not in {f"states:{a}" for (_, a) in AWS_CALL_BUDGETS_PER_SECOND}
    }
    for key, calls in sorted(others.items()):
        print(f"{key}: {calls} calls, throttled {counts['throttled'].get(key, 0)}")
    print(f"logs: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
