"""Workflow input rules (contract 5), and the tag rule every tag map follows.

A start request's `input` may be a string holding JSON text (the reference's form) or a JSON value
(the reference README's form). The stored `input` is the caller's JSON text; the execution input is
that value with `_EXECUTION_NAME` = workflow id added when it is an object, because activity workers
(sfncli's contract) need it to name their work.
"""

from __future__ import annotations

import json
from typing import Any

from workflow_manager.domain.aws import (
    EXECUTION_NAME_KEY,
    MAX_PAYLOAD_BYTES,
    MAX_TAG_KEY_LENGTH,
    MAX_TAG_VALUE_LENGTH,
    MAX_TAGS_PER_RESOURCE,
    RESERVED_TAG_PREFIX,
    is_allowed_tag_character,
)
from workflow_manager.domain.errors import InvalidInput


def input_text(raw: Any) -> str:
    """The JSON text to store for a request's `input`, validated."""
    if raw is None or raw == "":
        return "{}"
    if isinstance(raw, str):
        try:
            json.loads(raw)
        except ValueError as err:
            raise InvalidInput(f"input is not valid JSON: {err}") from err
        text = raw
    else:
        text = json.dumps(raw, separators=(",", ":"))
    if len(text.encode()) > MAX_PAYLOAD_BYTES:
        raise InvalidInput(
            f"input is {len(text.encode())} bytes, over the limit of {MAX_PAYLOAD_BYTES} bytes"
        )
    return text


def execution_input(stored_input: str, workflow_id: str) -> str:
    """The input handed to the execution: the stored input, with `_EXECUTION_NAME` when it is an
    object (overwriting one copied from an earlier workflow, as on resume)."""
    value = json.loads(stored_input) if stored_input else {}
    if isinstance(value, dict):
        value[EXECUTION_NAME_KEY] = workflow_id
        return json.dumps(value)
    return stored_input


# The tags the service puts on every state machine besides a definition's `defaultTags`
# (`executor.sfn_naming.state_machine_tags`); they count towards AWS's limit of tags per resource.
SERVICE_STATE_MACHINE_TAG_KEYS = (
    "application",
    "environment",
    "workflow-definition-name",
    "workflow-definition-version",
    "workflow-definition-start-at",
)


def string_tags(tags: Any, *, drop_non_strings: bool = False, field: str = "tags") -> dict[str, str]:
    """Tags as a string map (None is no tags): the one tag rule, for a workflow's `tags`, a
    definition's `defaultTags` and a state machine's tags.

    A tag value must be a string: otherwise the reference's `validateTagsMap` error ("error
    converting tag value to string: <value as JSON>"), or, with `drop_non_strings`, the value is left
    out, as the reference's `util.ToTagMap` did when it turned stored default tags into AWS tags.
    A non-object is rejected either way. Unless `drop_non_strings` (tags already stored, which
    were checked when saved), each tag must follow AWS's tag rules (`check_aws_tag`), and the
    map's size AWS's limit per resource; errors name `field`.
    """
    if tags is None:
        return {}
    if not isinstance(tags, dict):
        raise InvalidInput(f"tags must be an object of strings, not {_compact_json(tags)}")
    strings: dict[str, str] = {}
    for key, value in tags.items():
        if isinstance(value, str):
            strings[key] = value
        elif not drop_non_strings:
            raise InvalidInput(f"error converting tag value to string: {_compact_json(value)}")
    if not drop_non_strings:
        for key, value in strings.items():
            check_aws_tag(field, key, value)
        check_tag_count(field, strings)
    return strings


def check_aws_tag(field: str, key: str, value: str) -> None:
    """AWS's rules for one tag (`domain.aws`): a 400 naming `field` and the key."""
    if not 1 <= len(key) <= MAX_TAG_KEY_LENGTH:
        raise InvalidInput(
            f"{field} key {key!r} must be 1-{MAX_TAG_KEY_LENGTH} characters long, not {len(key)}"
        )
    if key.lower().startswith(RESERVED_TAG_PREFIX):
        raise InvalidInput(f"{field} key {key!r} starts with {RESERVED_TAG_PREFIX!r}, which AWS reserves")
    if len(value) > MAX_TAG_VALUE_LENGTH:
        raise InvalidInput(
            f"{field} value of {key!r} must be at most {MAX_TAG_VALUE_LENGTH} characters long, "
            f"not {len(value)}"
        )
    for part, text in (("key", key), ("value of", value)):
        for char in text:
            if not is_allowed_tag_character(char):
                raise InvalidInput(
                    f"{field} {part} {key!r} contains {char!r}, which AWS tags do not allow "
                    "(letters, numbers, spaces and _ . : / = + - @ only)"
                )


def check_tag_count(field: str, tags: dict[str, str], service_keys: tuple[str, ...] = ()) -> None:
    """At most AWS's tags per resource, counting the `service_keys` the service adds itself."""
    count = len(tags.keys() | set(service_keys))
    if count <= MAX_TAGS_PER_RESOURCE:
        return
    if service_keys:
        raise InvalidInput(
            f"{field} has {len(tags)} tags; with the {len(set(service_keys) - tags.keys())} the service "
            f"adds that is {count}, over AWS's limit of {MAX_TAGS_PER_RESOURCE} per resource"
        )
    raise InvalidInput(f"{field} has {count} tags, over AWS's limit of {MAX_TAGS_PER_RESOURCE} per resource")


def _compact_json(value: Any) -> str:
    # One spelling for every entry point: the compact one definition validation has always shown.
    return json.dumps(value, separators=(",", ":"))
