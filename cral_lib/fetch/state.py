"""``DIR/.cral_download.json``: per archive, its size, the byte offset reached and where it is done.

Written atomically. The files themselves stay the truth: an archive whose images are all in
the cache (or on disk) is done, whatever this file says.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .._io import atomic_write_bytes

#: The state file of a download folder.
STATE_FILE = ".cral_download.json"
STATE_FORMAT = 1


def now() -> str:
    """The local time, to the second, as the state file records it."""
    return time.strftime("%Y-%m-%dT%H:%M:%S")


class State:
    """``DIR/.cral_download.json``: per archive, its size, the offset reached and where it is done."""

    def __init__(self, out: Path) -> None:
        self.path = out / STATE_FILE
        self.data: dict[str, Any] = {"format": STATE_FORMAT, "archives": {}}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError):
            data = None
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT or not isinstance(
            data.get("archives"), dict
        ):
            # Unreadable or foreign: start a new one (the files on disk are the truth anyway).
            return
        self.data = data

    def entry(self, name: str) -> dict[str, Any]:
        return self.data["archives"].setdefault(name, {})

    def done_in(self, name: str) -> dict[str, str]:
        return self.entry(name).setdefault("done", {})

    def save(self) -> None:
        self.data["updated"] = now()
        atomic_write_bytes(self.path, (json.dumps(self.data, indent=1, sort_keys=True) + "\n").encode("utf-8"))




__all__ = ["STATE_FILE", "STATE_FORMAT", "State", "now"]
