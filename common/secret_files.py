"""Files that hold secrets: readable by their owner alone from the moment they exist."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

#: Owner read and write, nobody else.
PRIVATE = 0o600


def write_private(path: Path, text: str) -> None:
    """Replace the file with `text`, atomically, never readable by others even for a moment.

    The mode is given to os.open, so the file is created 0600 whatever the umask is, instead
    of being chmodded after it was written; the rename makes a reader see the old file or the
    new one whole.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
