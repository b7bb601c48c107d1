"""The `workflow-manager` command: `serve` (the API through gunicorn), `worker` (an activity
worker that runs a local command for each task), `emulator` (the embedded AWS emulator as a server
of its own), `init-tables` (the DynamoDB store's tables),
`token create` (a bearer token and its tokens-file entry), and, inside Batch jobs, `publish-output`
and `job-input` (data passed between jobs)."""

from __future__ import annotations

import argparse
import os
import sys

from workflow_manager.config import PROJECT_ROOT, Config, log_format, log_level
from workflow_manager.telemetry.logs import configure_logging

GUNICORN_CONFIG = PROJECT_ROOT / "deploy" / "gunicorn.conf.py"


def _serve(_args: argparse.Namespace) -> int:
    # Fail fast, before gunicorn forks, on a bad setting or a configuration that must not serve.
    try:
        config = Config.from_env()
    except ValueError as err:
        print(f"serve: {err}", file=sys.stderr)
        return 2
    refusal = config.startup_refusal()
    if refusal is None and config.auth_enabled:
        from workflow_manager.api.tokens import TokenFileError, load_tokens

        try:
            load_tokens(config.auth_tokens_file)
        except TokenFileError as err:
            refusal = f"refusing to start: {err}"
    if refusal:
        print(f"serve: {refusal}", file=sys.stderr)
        return 2
    argv = [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONFIG)]
    os.execv(sys.executable, argv)
    return 0  # not reached


def _worker(args: argparse.Namespace) -> int:
    from executor.activity_worker.command import run_worker_command
    from workflow_manager.wiring import AwsClients

    config = Config.from_env()
    if config.backend == "embedded":
        print(
            "worker: set WFM_BACKEND (endpoint, localstack or aws) to say where Step Functions is;"
            " the embedded emulator lives inside the service and starts its own workers"
            " (data/workers.yml)",
            file=sys.stderr,
        )
        return 2
    clients = AwsClients(config.backend, config.region, config.aws_endpoint)
    if not args.namespace:
        args.namespace = config.default_namespace
    return run_worker_command(args, clients.client("stepfunctions"))


def _emulator(args: argparse.Namespace) -> int:
    """Serve the embedded AWS emulator on its own, for several service processes to share (each
    with WFM_BACKEND=endpoint WFM_AWS_ENDPOINT=<its URL>): moto with Step Functions executions on,
    Batch jobs run as local commands, and the job queue and job definitions the embedded service
    would seed (WFM_BATCH_DEFAULT_QUEUE, WFM_BATCH_JOB_DEFINITIONS_FILE, the results table of
    WFM_DYNAMODB_PREFIX). Runs until SIGTERM or SIGINT."""
    import signal
    import threading

    import boto3

    from executor.aws_events import ensure_event_routing
    from executor.batch_results import BatchResultsTable, results_table_name
    from workflow_manager.emulator.seeding import seed_embedded_batch
    from workflow_manager.emulator.server import emulator_client_kwargs, start_embedded_emulator

    config = Config.from_env()
    emulator = start_embedded_emulator(port=args.port, host=args.host, quotas=config.emulator_quotas)
    try:
        kwargs = emulator_client_kwargs(emulator.endpoint_url)
        seed_embedded_batch(
            boto3.client("batch", **kwargs),
            boto3.client("iam", **kwargs),
            BatchResultsTable(
                boto3.client("dynamodb", **kwargs),
                config.batch_results_table or results_table_name(config.dynamodb_prefix),
            ),
            config.batch_job_definitions_file,
            queue_name=config.batch_default_queue,
        )
        # The events path, as in embedded mode: its queue's URL is printed for WFM_EVENTS_QUEUE_URL.
        queue_url = ensure_event_routing(
            boto3.client("events", **kwargs), boto3.client("sqs", **kwargs), config.dynamodb_prefix
        )
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        quotas = " with AWS's API rates" if config.emulator_quotas == "aws" else ""
        print(f"emulator: serving on {emulator.endpoint_url}{quotas}", flush=True)
        print(f"emulator: events queue {queue_url}", flush=True)
        stop.wait()
    finally:
        emulator.stop()
    return 0


def _init_tables(_args: argparse.Namespace) -> int:
    """Create the DynamoDB store's tables (idempotent), on the backend WFM_BACKEND names (or
    WFM_DYNAMODB_ENDPOINT), named from WFM_DYNAMODB_PREFIX."""
    from workflow_manager.domain.errors import WorkflowManagerError
    from workflow_manager.wiring import AwsClients, build_dynamodb_store

    config = Config.from_env()
    if config.backend == "embedded" and config.dynamodb_endpoint is None:
        print(
            "init-tables: set WFM_BACKEND (endpoint, localstack or aws) or WFM_DYNAMODB_ENDPOINT to say"
            " where DynamoDB is; the embedded emulator lives inside the service, which creates its"
            " tables when it starts with WFM_STORE=dynamodb",
            file=sys.stderr,
        )
        return 2
    store = build_dynamodb_store(config, AwsClients(config.backend, config.region, config.aws_endpoint))
    try:
        created = set(store.create_tables())
    except WorkflowManagerError as err:
        print(f"init-tables: {err.message}", file=sys.stderr)
        return 1
    for name in store.table_names():
        print(f"{name}: {'created' if name in created else 'exists'}")
    return 0


def _token_create(args: argparse.Namespace) -> int:
    """Print a new token, once, and the tokens-file entry that holds only its sha256."""
    from workflow_manager.api.tokens import new_token, token_file_entry
    from workflow_manager.domain.access import parse_roles
    from workflow_manager.domain.definitions import validate_aws_name
    from workflow_manager.domain.errors import InvalidInput

    try:
        parse_roles(args.role)
        for namespace in args.namespace or []:
            validate_aws_name("namespace", namespace)
    except (ValueError, InvalidInput) as err:
        print(f"token create: {getattr(err, 'message', err)}", file=sys.stderr)
        return 2
    token = new_token()
    entry = token_file_entry(args.name, token, sorted(set(args.role)), args.namespace)
    print(f"token (shown once; give it to {args.name} and keep it secret):")
    print(f"  {token}")
    print("add this entry under `tokens:` in the file WFM_AUTH_TOKENS_FILE names:")
    print("  " + entry.rstrip("\n").replace("\n", "\n  "))
    return 0


def main(argv: list[str] | None = None) -> int:
    configure_logging(log_level(), log_format())
    parser = argparse.ArgumentParser(prog="workflow-manager")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="serve the API (gunicorn, deploy/gunicorn.conf.py)")
    worker = commands.add_parser("worker", help="run an activity worker for a local command")
    from executor.activity_worker.command import add_worker_arguments

    add_worker_arguments(worker)
    from executor.batch_results import (
        add_job_input_arguments,
        add_publish_output_arguments,
        run_job_input,
        run_publish_output,
    )

    add_publish_output_arguments(
        commands.add_parser(
            "publish-output", help="inside a Batch job: publish its JSON output for its dependents"
        )
    )
    add_job_input_arguments(
        commands.add_parser(
            "job-input", help="inside a Batch job: print its input (its dependencies' outputs)"
        )
    )
    emulator = commands.add_parser(
        "emulator", help="serve the embedded AWS emulator on its own, for several service processes"
    )
    # Loopback by default: the emulator takes any credentials, so it must not face a network.
    emulator.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    emulator.add_argument(
        "--port", type=int, default=4566, help="port to listen on (default 4566; 0 picks one)"
    )
    commands.add_parser(
        "init-tables", help="create the DynamoDB store's tables (idempotent; WFM_DYNAMODB_PREFIX)"
    )
    token = commands.add_parser("token", help="bearer tokens for WFM_AUTH_TOKENS_FILE")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create = token_commands.add_parser("create", help="make a token; prints it once and its file entry")
    create.add_argument("name", help="who the token is for, as the audit log writes it")
    create.add_argument(
        "--role",
        action="append",
        required=True,
        help="reader, operator, author or admin (repeat for several)",
    )
    create.add_argument(
        "--namespace",
        action="append",
        help="only start/cancel/resume/resolve in this namespace (repeat for several; default all)",
    )
    args = parser.parse_args(argv)
    if args.command == "token":
        return _token_create(args)
    if args.command == "serve":
        return _serve(args)
    if args.command == "emulator":
        return _emulator(args)
    if args.command == "init-tables":
        return _init_tables(args)
    if args.command == "publish-output":
        return run_publish_output(args)
    if args.command == "job-input":
        return run_job_input(args)
    return _worker(args)


if __name__ == "__main__":
    sys.exit(main())
