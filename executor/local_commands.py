"""Commands run on this machine, by the activity worker (a workers file) and by the embedded
emulator's Batch runner (a job definitions file): both resolve a command's relative paths against the
folder of the file that names it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


def resolve_command(command: Sequence[str] | str, base_dir: str | os.PathLike[str] | None) -> list[str]:
    """A command with its relative paths resolved against `base_dir`: the first element when it
    contains a `/`, whether or not it exists, and any later argument that contains a `/` and names
    an existing file or directory there (so `--out=x/y` stays as it is). A string is run with
    `sh -c` (job definitions); the workers file splits its string commands shell-style first, so it
    passes a list."""
    parts = ["sh", "-c", command] if isinstance(command, str) else [str(part) for part in command]
    if base_dir is None or not parts:
        return parts
    base = Path(base_dir)
    if "/" in parts[0] and not os.path.isabs(parts[0]):
        parts[0] = str((base / parts[0]).resolve())
    for index in range(1, len(parts)):
        argument = parts[index]
        if "/" in argument and not os.path.isabs(argument) and (base / argument).exists():
            parts[index] = str((base / argument).resolve())
    return parts
