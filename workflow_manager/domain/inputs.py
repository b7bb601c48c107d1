"""Workflow input rules (contract 5), and the tag rule every tag map follows.

A start request's `input` may be a string holding JSON text (the reference's form) or a JSON value
(the reference README's form). The stored `input` is the caller's JSON text; the execution input is
that value with `_EXECUTION_NAME` = workflow id added when it is an object, because activity workers
(sfncli's contract) need it to name their work.
"""

from __future__ import annotations

import json
from typing import Any

from workflow_manager.domain.aws import EXECUTION_NAME_KEY, MAX_PAYLOAD_BYTES
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


def string_tags(tags: Any, *, drop_non_strings: bool = False) -> dict[str, str]:
    """Tags as a string map (None is no tags): the one tag rule, for a workflow's `tags`, a
    definition's `defaultTags` and a state machine's tags.

    A tag value must be a string: otherwise the reference's `validateTagsMap` error ("error
    converting tag value to string: <value as JSON>"), or, with `drop_non_strings`, the value is left
    out, as the reference's `util.ToTagMap` did when it turned stored default tags into AWS tags.
    A non-object is rejected either way.
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
    return strings


def _compact_json(value: Any) -> str:
    # One spelling for every entry point: the compact one definition validation has always shown.
    return json.dumps(value, separators=(",", ":"))
