"""Data between Batch jobs: the results table, and the two small commands a job's container runs.

A Batch job's environment is fixed when it is submitted, before its dependencies have run, so a job
cannot receive their outputs in its environment. As the reference did (notes 4.6), outputs go to a
DynamoDB table keyed by the Batch job id, and are read back by id:

- `workflow-manager publish-output [JSON]` (JSON from the argument or stdin) stores the job's output
  under `AWS_BATCH_JOB_ID`, which Batch sets in every container. Publishing again replaces it (a
  retried attempt publishes its own output).
- `workflow-manager job-input` prints the job's input: for a job with no dependency, the workflow's
  input (`_BATCH_START`); for a job with one dependency, that job's output; for a job with several
  (the state after a Parallel), a JSON array of their outputs in branch order. A dependency that
  published nothing counts as `null`. A job only runs once all its dependencies succeeded, so these
  are the outputs of succeeded jobs. Shell: `input=$(workflow-manager job-input)`.

The executor gives every job `_BATCH_DEPENDENCIES` (comma-joined job ids, as the reference) and
`WFM_BATCH_RESULTS_TABLE`, so a container needs no configuration beyond AWS credentials and region
(and, against an emulator, `AWS_ENDPOINT_URL`). The executor reads outputs back the same way to show
each job's `output` and `input` and the workflow's `output`; `dependents_input` is the one rule both
sides use.

Limits: an output is at most MAX_PAYLOAD_BYTES (Step Functions' payload limit, well under DynamoDB's
400 KB item limit); BatchGetItem reads at most DYNAMODB_BATCH_GET_MAX_KEYS ids per call.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from executor.aws_errors import error_code, translate_aws_error
from workflow_manager.domain.aws import DYNAMODB_BATCH_GET_MAX_KEYS, MAX_PAYLOAD_BYTES
from workflow_manager.domain.errors import BackendUnavailable, InvalidInput, WorkflowManagerError

log = logging.getLogger(__name__)

RESULTS_TABLE_SUFFIX = "-batch-results"
DEFAULT_RESULTS_TABLE = f"workflow-manager{RESULTS_TABLE_SUFFIX}"
# Outputs are needed while a workflow runs (its dependents and the service read them); the service
# keeps them on the workflow's jobs afterwards. DynamoDB's TTL deletes items after this long.
RESULT_TTL_SECONDS = 90 * 24 * 3600
# How long ensure_table waits for a new table to become ACTIVE.
TABLE_ACTIVE_TIMEOUT_SECONDS = 60.0

KEY_ATTRIBUTE = "JobId"
RESULT_ATTRIBUTE = "Result"
TTL_ATTRIBUTE = "ExpiresAt"

# Environment of a job's container.
ENV_JOB_ID = "AWS_BATCH_JOB_ID"  # set by Batch
ENV_DEPENDENCIES = "_BATCH_DEPENDENCIES"  # set by the executor (the reference's name)
ENV_START = "_BATCH_START"  # the workflow input, for the jobs with no dependency (the reference's)
ENV_RESULTS_TABLE = "WFM_BATCH_RESULTS_TABLE"
ENV_WORKFLOW_ID = "WORKFLOW_ID"
ENV_WORKFLOW_STATE = "WORKFLOW_STATE"


def results_table_name(prefix: str) -> str:
    """`{prefix}-batch-results`, next to the service's other tables."""
    return f"{prefix}{RESULTS_TABLE_SUFFIX}"


def dependents_input(start_input: str, dependency_outputs: Sequence[str | None]) -> str:
    """The input (JSON text) of a job whose dependencies published `dependency_outputs` (in
    dependency order; None for one that published nothing): see the module docstring."""
    if not dependency_outputs:
        return start_input or "{}"
    texts = [output if output else "null" for output in dependency_outputs]
    if len(texts) == 1:
        return texts[0]
    return "[" + ",".join(texts) + "]"


def _translate(err: Exception, action: str) -> WorkflowManagerError:
    return translate_aws_error(err, action, "DynamoDB")


class BatchResultsTable:
    """The results table: one item per Batch job id holding the job's output (JSON text)."""

    def __init__(self, dynamodb_client: Any, table_name: str = DEFAULT_RESULTS_TABLE):
        self._dynamodb = dynamodb_client
        self.table_name = table_name

    def ensure_table(self) -> None:
        """Create the table (on-demand capacity, TTL on) unless it exists; wait until it is ACTIVE."""
        try:
            try:
                status = self._dynamodb.describe_table(TableName=self.table_name)["Table"]["TableStatus"]
            except ClientError as err:
                if error_code(err) != "ResourceNotFoundException":
                    raise
                self._create_table()
                status = "CREATING"
            deadline = time.monotonic() + TABLE_ACTIVE_TIMEOUT_SECONDS
            while status != "ACTIVE":
                if time.monotonic() > deadline:
                    raise BackendUnavailable(f"table {self.table_name} is still {status}")
                time.sleep(0.5)
                status = self._dynamodb.describe_table(TableName=self.table_name)["Table"]["TableStatus"]
        except (ClientError, BotoCoreError) as err:
            raise _translate(err, f"creating table {self.table_name}") from err

    def _create_table(self) -> None:

        try:
            self._dynamodb.create_table(
                TableName=self.table_name,
                AttributeDefinitions=[{"AttributeName": KEY_ATTRIBUTE, "AttributeType": "S"}],
                KeySchema=[{"AttributeName": KEY_ATTRIBUTE, "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
            )
        except ClientError as err:
            # Another replica created it first.
            if error_code(err) != "ResourceInUseException":
                raise
            return
        self._dynamodb.update_time_to_live(
            TableName=self.table_name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
        )

    def publish(self, job_id: str, output: str, *, workflow_id: str = "", state: str = "") -> None:
        """Store `output` (JSON text) as the output of Batch job `job_id`. Raises InvalidInput for
        text that is not JSON or is over MAX_PAYLOAD_BYTES."""

        output = output.strip()
        try:
            json.loads(output)
        except ValueError as err:
            raise InvalidInput(f"output is not valid JSON: {err}") from err
        size = len(output.encode())
        if size > MAX_PAYLOAD_BYTES:
            raise InvalidInput(f"output is {size} bytes, over the limit of {MAX_PAYLOAD_BYTES} bytes")
        item = {
            KEY_ATTRIBUTE: {"S": job_id},
            RESULT_ATTRIBUTE: {"S": output},
            TTL_ATTRIBUTE: {"N": str(int(time.time()) + RESULT_TTL_SECONDS)},
        }
        if workflow_id:
            item["WorkflowId"] = {"S": workflow_id}
        if state:
            item["State"] = {"S": state}
        try:
            self._dynamodb.put_item(TableName=self.table_name, Item=item)
        except (ClientError, BotoCoreError) as err:
            raise _translate(err, f"publishing the output of job {job_id}") from err

    def outputs(self, job_ids: Iterable[str]) -> dict[str, str]:
        """The published outputs of `job_ids` (JSON text by job id); jobs that published nothing are
        absent. A missing table reads as no outputs."""

        ids = list(dict.fromkeys(job_ids))
        found: dict[str, str] = {}
        try:
            for start in range(0, len(ids), DYNAMODB_BATCH_GET_MAX_KEYS):
                keys = [{KEY_ATTRIBUTE: {"S": i}} for i in ids[start : start + DYNAMODB_BATCH_GET_MAX_KEYS]]
                request = {self.table_name: {"Keys": keys, "ConsistentRead": True}}
                while request:
                    response = self._dynamodb.batch_get_item(RequestItems=request)
                    for item in response.get("Responses", {}).get(self.table_name, []):
                        found[item[KEY_ATTRIBUTE]["S"]] = item[RESULT_ATTRIBUTE]["S"]
                    request = response.get("UnprocessedKeys") or {}
        except ClientError as err:
            if error_code(err) == "ResourceNotFoundException":
                log.warning("results table %s does not exist: no job outputs", self.table_name)
                return {}
            raise _translate(err, "reading job outputs") from err
        except BotoCoreError as err:
            raise _translate(err, "reading job outputs") from err
        return found

    def job_input(self, environ: Mapping[str, str]) -> str:
        """The input of the job whose container environment is `environ` (see dependents_input)."""
        dependencies = [i for i in environ.get(ENV_DEPENDENCIES, "").split(",") if i]
        if not dependencies:
            return dependents_input(environ.get(ENV_START, ""), [])
        outputs = self.outputs(dependencies)
        return dependents_input("", [outputs.get(i) for i in dependencies])


# The container commands. The `workflow-manager` CLI adds them as subcommands with the
# add_*_arguments functions and runs them with run_*; `python -m executor.batch_results` runs
# them without it.


def _results_from_env(environ: Mapping[str, str]) -> BatchResultsTable:
    # boto3 reads the region, credentials and AWS_ENDPOINT_URL from the environment.
    return BatchResultsTable(
        boto3.client("dynamodb"), environ.get(ENV_RESULTS_TABLE) or DEFAULT_RESULTS_TABLE
    )


def add_publish_output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Publish this Batch job's output (JSON) for the jobs that depend on it and for the workflow. "
        f"The job id is read from ${ENV_JOB_ID}, the table from ${ENV_RESULTS_TABLE}."
    )
    parser.add_argument("output", nargs="?", help="the output as JSON text; read from stdin when omitted")


def add_job_input_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Print this Batch job's input as JSON: the workflow input for a first job, the output of its "
        "one dependency, or an array of the outputs of several."
    )


def run_publish_output(
    args: argparse.Namespace,
    *,
    stdin: IO[str] | None = None,
    environ: Mapping[str, str] | None = None,
    results: BatchResultsTable | None = None,
) -> int:
    environ = os.environ if environ is None else environ
    job_id = environ.get(ENV_JOB_ID, "")
    if not job_id:
        print(f"publish-output: ${ENV_JOB_ID} is not set: run this inside a Batch job", file=sys.stderr)
        return 2
    output = args.output if args.output is not None else (stdin or sys.stdin).read()
    results = results or _results_from_env(environ)
    try:
        results.publish(
            job_id,
            output,
            workflow_id=environ.get(ENV_WORKFLOW_ID, ""),
            state=environ.get(ENV_WORKFLOW_STATE, ""),
        )
    except WorkflowManagerError as err:
        print(f"publish-output: {err.message}", file=sys.stderr)
        return 2 if isinstance(err, InvalidInput) else 1
    return 0


def run_job_input(
    _args: argparse.Namespace,
    *,
    stdout: IO[str] | None = None,
    environ: Mapping[str, str] | None = None,
    results: BatchResultsTable | None = None,
) -> int:
    environ = os.environ if environ is None else environ
    stdout = stdout or sys.stdout
    needs_table = any(environ.get(ENV_DEPENDENCIES, "").split(","))
    try:
        text = (results or _results_from_env(environ)).job_input(environ) if needs_table else None
        if text is None:
            text = dependents_input(environ.get(ENV_START, ""), [])
    except WorkflowManagerError as err:
        print(f"job-input: {err.message}", file=sys.stderr)
        return 1
    stdout.write(text + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m executor.batch_results")
    commands = parser.add_subparsers(dest="command", required=True)
    add_publish_output_arguments(commands.add_parser("publish-output"))
    add_job_input_arguments(commands.add_parser("job-input"))
    args = parser.parse_args(argv)
    if args.command == "publish-output":
        return run_publish_output(args)
    return run_job_input(args)


if __name__ == "__main__":
    sys.exit(main())
