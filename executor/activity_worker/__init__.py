"""The activity worker: polls a Step Functions activity and runs a local command for each task.

A program of its own beside the service: `workflow-manager worker` runs one in the foreground
(command.py), and the embedded mode starts one per entry of `data/workers.yml` in the service
(pool.py). `ActivityWorker` (poller.py) talks to Step Functions; `run_task` (runner.py) runs one
task's command and knows nothing of AWS.

It follows the contract of Clever's sfncli (the reference's worker), so existing task commands keep
working unchanged:

- The task input must be a JSON object with a string `_EXECUTION_NAME`. The object, re-serialised,
  is the command's LAST argument; the environment has `_EXECUTION_NAME` (and `WORK_DIR`, a fresh
  temporary directory removed afterwards, when a work directory is configured). Beyond sfncli, the
  input is also on the command's stdin and in a private file named by `WFM_TASK_INPUT_FILE`; an
  input longer than Linux's one-argument limit (MAX_ARG_STRLEN, 128 KiB, below Step Functions'
  256 KiB) is given ONLY those two ways, with no input argument (sfncli's exec fails on it).
- stdout and stderr go to the worker's own stdout and stderr (embedded workers: to a logger) and
  into ring buffers of 32 KiB. On exit 0 the last non-empty line of stdout is the output: a JSON
  object (empty stdout means `{}`), to which `_EXECUTION_NAME` is added back.
- On a nonzero exit, a last stdout line `{"error": "Name", "cause": "..."}` names the failure (also
  after SIGTERM); otherwise the failure is one of the `sfncli.*` names (runner.py) with the trimmed
  stderr as cause. Error and cause are truncated to the SendTaskFailure limits.
- One SendTaskHeartbeat at once, then every 5 s (sfncli: 20 s, which fails every state with a
  smaller `HeartbeatSeconds`; poller.HEARTBEAT_SECONDS). When Step Functions says the task is gone
  (TaskDoesNotExist, TaskTimedOut, InvalidToken: cancelled or timed out) the command gets SIGTERM,
  then SIGKILL after 5 s: another worker is likely to be starting the same work. When the worker
  gets SIGTERM it forwards it and sends SIGKILL after 25 s, slightly under the default 30 s
  `docker stop` grace of ECS.

Where this differs from sfncli, on purpose: `concurrency` pollers per process (sfncli runs one task
per process; AWS recommends many open polls per activity); each command runs in its own session so
that SIGTERM and SIGKILL take its whole process group (sfncli signals the command alone, and a
shell defers its trap until its foreground child ends, so the child's work ran on to the SIGKILL);
other forwarded signals go to the command alone; a command's environment is clean, not the worker's
(sfncli passes its own, AWS credentials and all): PATH, HOME and LANG, what the workers file's `env`
or the `worker` command's `--env` / `--pass-env` give, then `_EXECUTION_NAME`,
`WFM_TASK_INPUT_FILE` and `WORK_DIR` (runner.task_environment).
A command that relied on inheriting a variable (AWS_REGION, the ECS credentials URI) now needs it
passed. Not ported: activity tags from `_DEPLOY_ENV` and friends, ECS metadata in the
worker name, the `ActivityActivePercent` CloudWatch metric.

Pitfalls:
- GetActivityTask is a long poll (up to 60 s in AWS), so the client's read timeout must be longer
  than that (AWS suggests at least 65 s); a stop waits for the poll in flight to return.
- A token in hand is always worked and reported, even when stopping: dropping it would leave its
  execution waiting until the state times out. So `run_task` never raises.
- The package is an adapter at the edge: it imports the domain's names and limits
  (`workflow_manager.domain.aws`) and `executor.aws_errors` / `executor.local_commands`, never the
  services, the API, the wiring or the store.
"""
