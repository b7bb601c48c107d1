"""The `workflow-manager worker` subcommand: one `ActivityWorker` in the foreground, as sfncli runs.

`workflow-manager worker --activity NAME [--namespace NS] [...] -- COMMAND [ARGS...]` polls the
activity `NS--NAME` (or `NAME` without a namespace) until SIGINT or SIGTERM. The main thread is kept
free for the signal handler: it must be able to forward signals to the running commands.

The commands get a clean environment (runner.task_environment), not the worker's: `--env NAME=VALUE`
sets a variable for them and `--pass-env NAME` copies one from the worker's environment (a command
that calls AWS might need `--pass-env AWS_REGION --pass-env AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`,
say). Their output is teed to the worker's stdout and stderr, as sfncli does.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from executor.activity_worker.poller import HEARTBEAT_SECONDS, ActivityWorker, polled_activity_name
from executor.activity_worker.runner import signal_name
from workflow_manager.domain.aws import NAME_SEPARATOR

log = logging.getLogger(__name__)


def _variable_name(text: str) -> str:
    if not text or "=" in text or "\0" in text:
        raise argparse.ArgumentTypeError(f"expected a variable NAME, got {text!r}")
    return text


def _variable_assignment(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    if not name or "\0" in text:
        # The value is not quoted back: it may be a secret.
        raise argparse.ArgumentTypeError("expected NAME=VALUE with a non-empty NAME and no NUL")
    return name, value


def task_command_environment(
    assignments: Sequence[tuple[str, str]], passed: Sequence[str], environ: Mapping[str, str]
) -> dict[str, str]:
    """The variables `--pass-env` and `--env` give the commands: each passed NAME that `environ` has
    (an unset one is left out, as `docker run -e NAME` does), then each `--env` NAME=VALUE, so an
    explicit value wins."""
    env = {name: environ[name] for name in passed if name in environ}
    env.update(assignments)
    return env


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `workflow-manager worker --activity NAME [...] -- COMMAND [ARGS...]`."""
    parser.add_argument("--activity", required=True, help="activity name (the Task's Resource)")
    parser.add_argument(
        "--namespace",
        default=None,
        help=f"namespace: the activity polled is NAMESPACE{NAME_SEPARATOR}ACTIVITY (none: ACTIVITY as given)",
    )
    parser.add_argument("--concurrency", type=int, default=1, help="tasks run at once (default 1, as sfncli)")
    parser.add_argument(
        "--worker-name", default=None, help="name reported to Step Functions (default HOST-PID)"
    )
    parser.add_argument(
        "--work-directory",
        default=None,
        help="give each task a fresh WORK_DIR under this directory, removed afterwards",
    )
    parser.add_argument(
        "--poll-interval", type=float, default=1.0, help="seconds between polls of one poller (default 1)"
    )
    parser.add_argument(
        "--heartbeat-seconds",
        type=float,
        default=HEARTBEAT_SECONDS,
        help=f"seconds between task heartbeats (default {HEARTBEAT_SECONDS:g})",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        type=_variable_assignment,
        metavar="NAME=VALUE",
        help="set NAME=VALUE in the commands' environment (repeatable); they get no other variable of"
        " the worker's but PATH, HOME and LANG. Pass a secret with --pass-env instead: a command line"
        " is visible to every user of the machine",
    )
    parser.add_argument(
        "--pass-env",
        action="append",
        default=[],
        type=_variable_name,
        metavar="NAME",
        help="copy NAME from the worker's environment into the commands' when it is set (repeatable)",
    )
    parser.add_argument(
        "task_command",
        nargs=argparse.REMAINDER,
        metavar="-- COMMAND [ARGS...]",
        help="the command to run for each task; the task input is appended as its last argument",
    )


def run_worker_command(args: argparse.Namespace, sfn_client: Any) -> int:
    """Run a worker until SIGINT or SIGTERM; the exit status.

    SIGINT stops polling and lets running tasks finish (and is forwarded to them, as sfncli forwards
    every signal); SIGTERM also forwards SIGTERM to them and sends SIGKILL 25 s later.
    """
    command = list(args.task_command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("worker: a command is required: worker --activity NAME -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    if args.concurrency < 1:
        print(f"worker: --concurrency must be at least 1, not {args.concurrency}", file=sys.stderr)
        return 2
    try:
        name = polled_activity_name(args.activity, args.namespace)
    except ValueError as err:
        print(f"worker: {err}", file=sys.stderr)
        return 2
    worker = ActivityWorker(
        sfn_client,
        name,
        command,
        worker_name=args.worker_name,
        concurrency=args.concurrency,
        poll_interval=args.poll_interval,
        heartbeat_seconds=args.heartbeat_seconds,
        work_directory=args.work_directory,
        extra_env=task_command_environment(args.env, args.pass_env, os.environ),
    )
    stop_event = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("worker got %s: stopping after the running tasks", signal_name(signum))
        stop_event.set()
        if signum == signal.SIGTERM:
            worker.terminate()
        else:
            worker.forward_signal(signum)

    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, on_signal) for signum in handled}
    try:
        thread = worker.start(stop_event)
        # Joined in steps: the main thread must stay free to run the signal handler.
        while thread.is_alive():
            thread.join(timeout=0.5)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0
