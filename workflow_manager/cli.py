"""The `workflow-manager` command: `serve` (the API through gunicorn), `worker` (an activity
worker that runs a local command for each task)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from workflow_manager.config import PROJECT_ROOT, Config

GUNICORN_CONFIG = PROJECT_ROOT / "deploy" / "gunicorn.conf.py"


def _serve(_args: argparse.Namespace) -> int:
    Config.from_env()  # fail fast, before gunicorn forks, on a bad setting
    argv = [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONFIG)]
    os.execv(sys.executable, argv)
    return 0  # not reached


def _worker(args: argparse.Namespace) -> int:
    from workflow_manager.aws import AwsClients
    from workflow_manager.worker import run_worker_command

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


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=os.environ.get("WFM_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    parser = argparse.ArgumentParser(prog="workflow-manager")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="serve the API (gunicorn, deploy/gunicorn.conf.py)")
    worker = commands.add_parser("worker", help="run an activity worker for a local command")
    from workflow_manager.worker import add_worker_arguments

    add_worker_arguments(worker)
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    return _worker(args)


if __name__ == "__main__":
    sys.exit(main())
