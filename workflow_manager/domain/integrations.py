"""What a Task state's `Resource` may name (CONTRACT 9.1), and the check of definitions and state
resource URIs against it.

A definition runs with the Step Functions role's permissions: a Task naming
`arn:aws:states:::aws-sdk:iam:listRoles` would hand whoever saves the definition whatever that role
may do. So a Resource must be one of the forms below, or start with a prefix the operator listed in
`WFM_ALLOWED_INTEGRATIONS`:
- a bare name (an activity, or a state resource whose URI was checked when it was saved);
- the short forms `lambda:X`, `glue:X`, `batch:X`, `workflow:NAME[:VERSION]`, and `approval`;
- the ARN of an activity, a Lambda function or a Batch job definition (a `manager: batch` Task and a
  JobDefinitionARN state resource name one);
- the ARN of one of the service integrations below, bare or in one of its integration patterns.

The check walks every state at every depth (`states.iter_states`), for both managers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from workflow_manager.domain.errors import InvalidInput
from workflow_manager.domain.states import iter_states

# The service integrations a definition may use (CONTRACT 9.1), as `service:action` of
# `arn:PARTITION:states:::service:action`.
ALLOWED_SERVICE_INTEGRATIONS = (
    "lambda:invoke",
    "batch:submitJob",
    "glue:startJobRun",
    "states:startExecution",
    "sqs:sendMessage",
    "sns:publish",
    "events:putEvents",
)
# Step Functions' integration patterns: request-response (no suffix), run a job (.sync, and .sync:2
# for states:startExecution's JSON output), wait for a callback (.waitForTaskToken).
INTEGRATION_PATTERN_SUFFIXES = ("", ".sync", ".sync:2", ".waitForTaskToken")
# Resources the service itself resolves (CONTRACT 6, 9.5, 9.6).
SHORT_FORM_PREFIXES = ("lambda:", "glue:", "batch:", "workflow:")
APPROVAL_RESOURCE = "approval"

_PARTITION = r"arn:aws(?:-[a-z]+)*"
_REGION_ACCOUNT = r"[a-z0-9-]+:\d{12}"
_RESOURCE_ARNS = (
    re.compile(rf"^{_PARTITION}:states:{_REGION_ACCOUNT}:activity:[^:]+$"),
    re.compile(rf"^{_PARTITION}:lambda:{_REGION_ACCOUNT}:function:[^:]+(?::[^:]+)?$"),
    re.compile(rf"^{_PARTITION}:batch:{_REGION_ACCOUNT}:job-definition/[^:]+(?::\d+)?$"),
)
_INTEGRATION_ARN = re.compile(
    rf"^{_PARTITION}:states:::(?P<integration>"
    + "|".join(re.escape(i) for i in ALLOWED_SERVICE_INTEGRATIONS)
    + r")(?P<suffix>"
    + "|".join(re.escape(s) for s in INTEGRATION_PATTERN_SUFFIXES if s)
    + r")?$"
)
# A distributed Map's parts that name a resource of their own (S3 reads and writes).
DISTRIBUTED_MAP_RESOURCE_KEYS = ("ItemReader", "ResultWriter")
HOW_TO_ALLOW = "an operator may allow it with WFM_ALLOWED_INTEGRATIONS"


@dataclass(frozen=True)
class IntegrationPolicy:
    """The contract's list plus `extra_prefixes`, the ARN prefixes of WFM_ALLOWED_INTEGRATIONS."""

    extra_prefixes: tuple[str, ...] = ()

    def allows(self, resource: str) -> bool:
        if any(prefix and resource.startswith(prefix) for prefix in self.extra_prefixes):
            return True
        if resource.startswith("arn:"):
            return bool(_INTEGRATION_ARN.match(resource)) or any(p.match(resource) for p in _RESOURCE_ARNS)
        if resource == APPROVAL_RESOURCE:
            return True
        if resource.startswith(SHORT_FORM_PREFIXES):
            return len(resource.split(":", 1)[1]) > 0
        return ":" not in resource  # an activity or a state resource

    def check_state_machine(self, state_machine: Any) -> None:
        """Raise InvalidInput naming the first state, at any depth, whose Resource is not allowed:
        a Task's, and a distributed Map's `ItemReader` and `ResultWriter`, which run with the Step
        Functions role too."""
        for state_name, state, _depth in iter_states(state_machine):
            if state.get("Type") == "Task":
                self._check_resource(state_name, state.get("Resource"), "Resource")
            elif state.get("Type") == "Map":
                for key in DISTRIBUTED_MAP_RESOURCE_KEYS:
                    part = state.get(key)
                    if isinstance(part, dict) and "Resource" in part:
                        self._check_resource(state_name, part["Resource"], f"{key}.Resource")

    def _check_resource(self, state_name: str, resource: Any, field: str) -> None:
        if not isinstance(resource, str):
            raise InvalidInput(
                f"state '{state_name}': {field} must be a string, not {type(resource).__name__}"
            )
        if not self.allows(resource):
            raise InvalidInput(
                f"state '{state_name}' uses resource '{resource}', which is not an allowed"
                f" integration ({HOW_TO_ALLOW})"
            )

    def check_uri(self, uri: str) -> None:
        """Raise InvalidInput unless a state resource's URI is allowed."""
        if not self.allows(uri):
            raise InvalidInput(f"StateResource uri '{uri}' is not an allowed integration ({HOW_TO_ALLOW})")
