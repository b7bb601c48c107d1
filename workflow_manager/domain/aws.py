"""What AWS allows: the name rules and the limits the service designs around, each with its source.

One module, so that a limit is written once and every adapter (executors, store, activity worker,
emulator) and every rule (definitions, inputs) reads the same value. Pure data and two small
functions; no AWS library.
"""

from __future__ import annotations

import unicodedata

# Names (Step Functions)

# CreateStateMachine / CreateActivity / StartExecution `name`, GetActivityTask `workerName`:
# "Length Constraints: Minimum length of 1. Maximum length of 80." (AWS Step Functions API
# Reference). Contract section 1 applies it to definition, namespace and state-resource names, which
# become parts of those names.
MAX_NAME_LENGTH = 80
# "A name must not contain: white space; brackets < > { } [ ]; wildcard characters ? *; special
# characters " # % \ ^ | ~ ` $ & , ; : /; control characters (U+0000-001F, U+007F-009F)" (AWS Step
# Functions API Reference, CreateStateMachine `name`). Whitespace and control characters are checked
# by `is_forbidden_name_character`, not listed here.
FORBIDDEN_NAME_CHARACTERS = frozenset('<>{}[]?*"#%\\^|~`$&,;:/')

# The service's naming convention (the reference's sfnconventions): the parts of a state machine
# name, and `{namespace}--{resource}` for activities, Lambda functions and Glue jobs.
NAME_SEPARATOR = "--"

# The key of the execution input that carries the workflow id (sfncli's contract: activity workers
# name their work by it). The executor adds it to every execution's input, Map states forward it.
EXECUTION_NAME_KEY = "_EXECUTION_NAME"


def is_forbidden_name_character(char: str) -> bool:
    """Whether Step Functions refuses `char` in a name (see FORBIDDEN_NAME_CHARACTERS)."""
    code = ord(char)
    return char in FORBIDDEN_NAME_CHARACTERS or char.isspace() or code <= 0x1F or 0x7F <= code <= 0x9F


def activity_name(namespace: str, resource: str) -> str:
    """`{namespace}--{resource}`: the activity an sfncli worker for `resource` polls in `namespace`."""
    return f"{namespace}{NAME_SEPARATOR}{resource}"


# Tags (Step Functions TagResource and CreateStateMachine `tags`)

# "Maximum number of tags per resource: 50" (AWS Step Functions quotas; AWS General Reference,
# "Tagging your AWS resources", which also gives the two lengths and the prefix below).
MAX_TAGS_PER_RESOURCE = 50
# Tag `key`: "Length Constraints: Minimum length of 1. Maximum length of 128."; `value`: "Minimum
# length of 0. Maximum length of 256." (AWS Step Functions API Reference, Tag).
MAX_TAG_KEY_LENGTH = 128
MAX_TAG_VALUE_LENGTH = 256
# "Do not use aws:, AWS:, or any upper or lowercase combination of such as a prefix for either keys
# or values as it is reserved for AWS use." (AWS General Reference, tagging best practices).
RESERVED_TAG_PREFIX = "aws:"
# Tag key and value pattern `^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$` (AWS Step Functions API Reference,
# Tag): letters, separators (spaces), numbers and these characters. Letters, numbers and spaces are
# checked by `is_allowed_tag_character`.
TAG_PUNCTUATION = frozenset("_.:/=+-@")


def is_allowed_tag_character(char: str) -> bool:
    """Whether AWS allows `char` in a tag key or value (see TAG_PUNCTUATION)."""
    category = unicodedata.category(char)
    return char in TAG_PUNCTUATION or category[0] in ("L", "N") or category in ("Zs", "Zl", "Zp")


# Payloads (Step Functions)

# "Maximum input or output size for a task, state, or execution: 256 KiB of data as a UTF-8 encoded
# string" (AWS Step Functions quotas). Workflow inputs, and Batch job outputs (which become the
# workflow's output and a resumed workflow's input), follow it.
MAX_PAYLOAD_BYTES = 256 * 1024
# SendTaskFailure: "error: Maximum length of 256", "cause: Maximum length of 32768" (AWS Step Functions
# API Reference).
MAX_TASK_ERROR_LENGTH = 256
MAX_TASK_CAUSE_LENGTH = 32_768
# GetExecutionHistory `maxResults`: "Maximum value of 1000" (AWS Step Functions API Reference).
MAX_HISTORY_PAGE_SIZE = 1000

# AWS Batch

# "Maximum number of job dependencies for a job: 20" (AWS Batch service quotas, resource table).
MAX_JOB_DEPENDENCIES = 20
# RetryStrategy.attempts: "You can specify between 1 and 10 attempts" (AWS Batch API Reference).
MAX_BATCH_ATTEMPTS = 10
# JobTimeout.attemptDurationSeconds: "The minimum value for the timeout is 60 seconds" (AWS Batch API
# Reference, JobTimeout).
MIN_ATTEMPT_DURATION_SECONDS = 60
# "Maximum number of transactions per second (TPS) for each account for SubmitJob operations: 50"
# (AWS Batch service quotas).
MAX_SUBMIT_JOBS_PER_SECOND = 50
# "Maximum job payload size (for SubmitJob API operations): 30 KiB" (AWS Batch service quotas).
MAX_SUBMIT_JOB_PAYLOAD_BYTES = 30 * 1024
# DescribeJobs: "jobs: A list of up to 100 job IDs" (AWS Batch API Reference).
DESCRIBE_JOBS_MAX_IDS = 100
# SubmitJob jobName: "up to 128 letters (uppercase and lowercase), numbers, hyphens, and underscores"
# and "the first character must be alphanumeric" (AWS Batch API Reference).
MAX_BATCH_JOB_NAME_LENGTH = 128

# DynamoDB (Amazon DynamoDB developer guide, "Service, account, and table quotas")

# "The maximum item size in DynamoDB is 400 KB, which includes both attribute name binary length
# (UTF-8 length) and attribute value lengths."
DYNAMODB_ITEM_LIMIT = 400 * 1024
# BatchWriteItem: "up to 25 put or delete requests" (DynamoDB API Reference).
DYNAMODB_BATCH_WRITE_MAX_ITEMS = 25
# BatchGetItem: "as many as 100 items" (DynamoDB API Reference).
DYNAMODB_BATCH_GET_MAX_KEYS = 100


# API rates shared by every replica

# The account-wide rates the service's calls of all replicas together stay under (each replica takes
# its share: executor.call_budget). Step Functions throttles these actions per account and region
# with token buckets that refill at 15 (DescribeExecution) and 20 (GetExecutionHistory) calls per
# second (AWS Step Functions quotas, "Quotas related to API action throttling"); the budgets leave a
# fifth of each for the account's other callers (consoles, other services).
AWS_CALL_BUDGETS_PER_SECOND: dict[tuple[str, str], float] = {
    ("stepfunctions", "DescribeExecution"): 12.0,
    ("stepfunctions", "GetExecutionHistory"): 16.0,
}
