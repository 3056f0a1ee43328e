"""Small JSON config files under ``<storePathRootDir>/config/``, written atomically (RocketMQ's ConfigManager).

Each file is rewritten whole (tmp + fsync + rename) and a ``.bak`` of the previous version is kept, so a
crash mid-write leaves either the old or the new content, never a mix.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from tidemq.errors import ConfigError

log = logging.getLogger(__name__)


def load_json(path: Path) -> dict[str, Any] | None:
    """The file's JSON object, falling back to its ``.bak``; None when neither exists."""
    for candidate in (path, path.with_name(path.name + ".bak")):
        try:
            text = candidate.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            log.warning("%s is not valid JSON (%s); trying its backup", candidate, exc)
            continue
        if not isinstance(data, dict):
            raise ConfigError(f"{candidate} does not hold a JSON object")
        return data
    return None


def save_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fdatasync(f.fileno())
    if path.exists():
        os.replace(path, path.with_name(path.name + ".bak"))
    os.replace(tmp, path)
