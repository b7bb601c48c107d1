"""Task commands for the infrastructure bootstrap example (data/bootstrap-infrastructure.post.json).

An Atmos-style bootstrap run locally: each step is a real command that creates or checks files
under a state directory (WFM_DEMO_DIR, default /tmp/workflow-manager-demo/<tenant>) standing in
for the S3 bucket, the DynamoDB lock table, the plans and the applied state. The worker gives its
commands a clean environment: WFM_DEMO_DIR reaches this script only from the `env` of its entry in
data/workers.yml.

Usage: infra.py STEP '<task input JSON>'   (the worker appends the input as the last argument)
"""

import json
import os
import pathlib
import sys
import time


def state_dir(task: dict) -> pathlib.Path:
    root = pathlib.Path(os.environ.get("WFM_DEMO_DIR", "/tmp/workflow-manager-demo"))
    path = root / task["tenant"]
    path.mkdir(parents=True, exist_ok=True)
    return path


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr)


def validate(task: dict) -> dict:
    missing = [key for key in ("tenant", "region", "accounts") if not task.get(key)]
    if missing:
        print(json.dumps({"error": "InvalidParameters", "cause": f"missing: {', '.join(missing)}"}))
        sys.exit(1)
    log(f"bootstrapping {task['tenant']} in {task['region']} for {len(task['accounts'])} accounts")
    return {"bucket": f"{task['tenant']}-terraform-state", "table": f"{task['tenant']}-terraform-locks"}


def create_bucket(task: dict) -> dict:
    bucket = state_dir(task) / f"{task['tenant']}-terraform-state"
    bucket.mkdir(exist_ok=True)
    (bucket / "versioning").write_text("Enabled\n")
    log(f"bucket {bucket.name} ready (versioning on)")
    return {"bucket": str(bucket)}


def create_table(task: dict) -> dict:
    # The first attempt fails, as a throttled CreateTable would: the state's Retry takes it.
    marker = state_dir(task) / ".lock-table-attempted"
    if not marker.exists():
        marker.write_text("1")
        print(json.dumps({"error": "ThrottlingException", "cause": "Rate exceeded (simulated)"}))
        sys.exit(1)
    table = state_dir(task) / f"{task['tenant']}-terraform-locks.json"
    table.write_text(json.dumps({"AttributeDefinitions": [{"AttributeName": "LockID"}]}))
    log(f"lock table {table.name} ready")
    return {"table": str(table)}


def plan(task: dict) -> dict:
    account = task["account"]
    plan_file = state_dir(task) / f"plan-{account}.txt"
    plan_file.write_text(f"+ backend for {account} in {task['region']}\n")
    log(f"planned {account}")
    return {"account": account, "plan": str(plan_file), "changes": 1}


def apply(task: dict) -> dict:
    if task.get("break_apply"):
        print(f"apply refused for {task['tenant']}: break_apply is set", file=sys.stderr)
        sys.exit(1)
    applied = []
    for account in task["accounts"]:
        plan_file = state_dir(task) / f"plan-{account}.txt"
        if not plan_file.exists():
            print(json.dumps({"error": "PlanMissing", "cause": f"no plan for {account}"}))
            sys.exit(1)
        (state_dir(task) / f"applied-{account}.txt").write_text(plan_file.read_text())
        applied.append(account)
    log(f"applied {', '.join(applied)}")
    return {"applied": applied}


def report_failure(task: dict) -> dict:
    error = task.get("failure", {})
    (state_dir(task) / "FAILED").write_text(json.dumps(error))
    log(f"recorded failure: {error.get('Error')}")
    return {"reported": True}


STEPS = {
    "validate": validate,
    "create-bucket": create_bucket,
    "create-table": create_table,
    "plan": plan,
    "apply": apply,
    "report-failure": report_failure,
}

if __name__ == "__main__":
    step, task = sys.argv[1], json.loads(sys.argv[-1])
    print(json.dumps(STEPS[step](task)))
