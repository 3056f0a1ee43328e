"""The README's SDK example runs as printed, against a real tidemq (its name-server address swapped in)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.server_process import start_server

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_sdk_example_sends_and_receives(tmp_path: Path) -> None:
    match = re.search(r"## The Python SDK.*?```python\n(.*?)```", README.read_text(), re.S)
    assert match, "the README has a Python SDK section with a python code block"
    code = match.group(1)
    assert "127.0.0.1:9876" in code
    server = start_server(tmp_path / "data")
    try:
        script = tmp_path / "readme_sdk.py"
        script.write_text(code.replace("127.0.0.1:9876", server.namesrv_addr))
        result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False)
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("SendStatus.SEND_OK "), lines
    assert lines[1] == "TagA b'hello, tidemq'", lines
