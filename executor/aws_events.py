"""AWS events about the service's executions and jobs, read from an SQS queue that EventBridge
rules deliver to (deploy/ creates both; embedded mode creates them in the emulator with
`ensure_event_routing`).

Which workflow an event is about: a Step Functions execution is named after its workflow (the
detail's `name`); a Batch job carries its workflow's id in the WORKFLOW_ID_TAG tag (and, for jobs
submitted before the tag existed, in the WORKFLOW_ID variable of its container environment).
Events of anything else (another service's state machines, in a shared account) have no workflow
and are acknowledged as they are.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from executor import aws_errors
from executor.batch import WORKFLOW_ID_TAG
from executor.batch_results import ENV_WORKFLOW_ID
from executor.interface import ExecutionReport, ReceivedEvent
from executor.sfn import status_report_from_event
from workflow_manager.domain.errors import WorkflowManagerError

log = logging.getLogger(__name__)

SFN_STATUS_CHANGE = ("aws.states", "Step Functions Execution Status Change")
BATCH_STATE_CHANGE = ("aws.batch", "Batch Job State Change")
# SQS: at most 10 messages per ReceiveMessage, and a long poll of at most 20 s.
SQS_MAX_MESSAGES = 10
SQS_MAX_WAIT_SECONDS = 20
# A message not deleted (its workflow could not be refreshed) is delivered again after this long,
# and goes to the dead-letter queue after DLQ_MAX_RECEIVES deliveries.
VISIBILITY_TIMEOUT_SECONDS = 30
DLQ_MAX_RECEIVES = 5


def workflow_id_of(event: dict[str, Any]) -> str | None:
    detail = event.get("detail") or {}
    kind = (event.get("source"), event.get("detail-type"))
    if kind == SFN_STATUS_CHANGE:
        return detail.get("name") or None
    if kind == BATCH_STATE_CHANGE:
        tagged = (detail.get("tags") or {}).get(WORKFLOW_ID_TAG)
        if tagged:
            return tagged
        environment = (detail.get("container") or {}).get("environment") or []
        return next((v.get("value") for v in environment if v.get("name") == ENV_WORKFLOW_ID), None)
    return None


def status_of(event: dict[str, Any]) -> ExecutionReport | None:
    """What a Step Functions status change says of its execution (None for other events, and for
    one that does not say all of it)."""
    detail = event.get("detail")
    if (event.get("source"), event.get("detail-type")) != SFN_STATUS_CHANGE or not isinstance(detail, dict):
        return None
    return status_report_from_event(detail)


def _translate(err: Exception, action: str) -> WorkflowManagerError:
    return aws_errors.translate_aws_error(err, action, "SQS")


class SqsEventSource:
    def __init__(self, sqs_client: Any, queue_url: str):
        self._sqs = sqs_client
        self.queue_url = queue_url

    def receive(self, wait_seconds: int = SQS_MAX_WAIT_SECONDS) -> list[ReceivedEvent]:
        try:
            response = self._sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=SQS_MAX_MESSAGES,
                WaitTimeSeconds=min(wait_seconds, SQS_MAX_WAIT_SECONDS),
            )
        except (ClientError, BotoCoreError) as err:
            raise _translate(err, "ReceiveMessage") from err
        received = []
        for message in response.get("Messages", []):
            try:
                event = json.loads(message.get("Body") or "{}")
            except ValueError:
                event = {}
            if not isinstance(event, dict):
                event = {}
            kind = f"{event.get('source')}/{event.get('detail-type')}"
            received.append(
                ReceivedEvent(workflow_id_of(event), message["ReceiptHandle"], kind, status_of(event))
            )
        return received

    def acknowledge(self, receipts: list[str]) -> None:
        for start in range(0, len(receipts), SQS_MAX_MESSAGES):
            entries = [
                {"Id": str(index), "ReceiptHandle": receipt}
                for index, receipt in enumerate(receipts[start : start + SQS_MAX_MESSAGES])
            ]
            try:
                self._sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
            except (ClientError, BotoCoreError) as err:
                raise _translate(err, "DeleteMessageBatch") from err


def event_rules(prefix: str) -> dict[str, dict[str, Any]]:
    """The EventBridge rules (name -> event pattern) that route the service's events to its queue:
    executions of its state machines (named `{prefix}...`, see executor.sfn_naming) and all Batch
    job changes (filtered by tag on receipt, since a rule cannot match tags)."""
    return {
        f"{prefix}-sfn-status": {"source": [SFN_STATUS_CHANGE[0]], "detail-type": [SFN_STATUS_CHANGE[1]]},
        f"{prefix}-batch-status": {"source": [BATCH_STATE_CHANGE[0]], "detail-type": [BATCH_STATE_CHANGE[1]]},
    }


def ensure_event_routing(events_client: Any, sqs_client: Any, prefix: str) -> str:
    """Create (idempotently) the events queue, its dead-letter queue and the rules that feed it;
    return the queue's URL. Embedded mode only: elsewhere deploy/ creates them."""
    dlq_url = sqs_client.create_queue(QueueName=f"{prefix}-aws-events-dlq")["QueueUrl"]
    dlq_arn = sqs_client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue_url = sqs_client.create_queue(
        QueueName=f"{prefix}-aws-events",
        Attributes={
            "VisibilityTimeout": str(VISIBILITY_TIMEOUT_SECONDS),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": DLQ_MAX_RECEIVES}
            ),
        },
    )["QueueUrl"]
    queue_arn = sqs_client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    for name, pattern in event_rules(prefix).items():
        events_client.put_rule(Name=name, EventPattern=json.dumps(pattern), State="ENABLED")
        events_client.put_targets(Rule=name, Targets=[{"Id": "events-queue", "Arn": queue_arn}])
    return queue_url
