"""The loads: the official Java client (bench/java, ``tidemq.bench.Bench``) and, where it exists, tidemq's own
Python load generator (``tidemq bench``). Each run is a subprocess bounded in time; its JSON result is returned.

The Java program is built with Maven into ``bench/java/target/rmq-<version>/`` when its sources change (offline
first, then online), as tests/interop/java_driver.py does for the interop driver.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

JAVA_PROJECT = Path(__file__).resolve().parents[1] / "java"
CLIENT_VERSION = "5.5.0"  # org.apache.rocketmq:rocketmq-client, the remoting client (pinned in bench/java/pom.xml)
MAIN = "tidemq.bench.Bench"
# The load's own JVM: the same for both brokers. G1 with a fixed 1 GiB heap keeps GC out of the way.
LOAD_JVM_ARGS: tuple[str, ...] = ("-Xms1g", "-Xmx1g", "-XX:+UseG1GC", "-Djava.net.preferIPv4Stack=true")
REPO = Path(__file__).resolve().parents[2]


class LoadError(RuntimeError):
    pass


def _tool(name: str) -> str:
    home = os.environ.get("JAVA_HOME")
    if name in ("java", "javac") and home and (Path(home) / "bin" / name).is_file():
        return str(Path(home) / "bin" / name)
    path = shutil.which(name)
    if path is None:
        raise LoadError(f"{name} not found on PATH (Debian: apt-get install openjdk-17-jdk-headless maven)")
    return path


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _digest(version: str) -> str:
    h = hashlib.sha256(version.encode())
    for p in sorted([JAVA_PROJECT / "pom.xml", *(JAVA_PROJECT / "src").rglob("*.java")]):
        h.update(str(p.relative_to(JAVA_PROJECT)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def target_dir(version: str = CLIENT_VERSION) -> Path:
    return JAVA_PROJECT / "target" / f"rmq-{version}"


def ensure_built(version: str = CLIENT_VERSION) -> Path:
    """Build bench/java for ``version`` unless an up-to-date build exists; returns its target directory."""
    target = target_dir(version)
    stamp = target / ".tidemq-build-stamp"
    with _locked(JAVA_PROJECT / "target" / f".build-{version}.lock"):
        want = _digest(version)
        if stamp.is_file() and stamp.read_text() == want and (target / "tidemq-bench.jar").is_file():
            return target
        base = [_tool("mvn"), "-q", "-B", "-f", str(JAVA_PROJECT / "pom.xml"), f"-Drocketmq.version={version}"]
        result: subprocess.CompletedProcess[str] | None = None
        for offline in (True, False):
            cmd = [*base, *(["-o"] if offline else []), "clean", "package"]
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
            if result.returncode == 0:
                break
        assert result is not None
        if result.returncode != 0:
            raise LoadError(f"building bench/java failed:\n{(result.stdout + result.stderr)[-4000:]}")
        stamp.write_text(want)
    return target


def java_command(args: Sequence[str], home: Path, version: str = CLIENT_VERSION) -> list[str]:
    target = ensure_built(version)
    return [
        _tool("java"),
        *LOAD_JVM_ARGS,
        f"-Duser.home={home}",
        f"-Drocketmq.client.logRoot={home / 'logs'}",
        "-Drocketmq.client.logLevel=WARN",
        "-cp",
        f"{target / 'tidemq-bench.jar'}{os.pathsep}{target / 'lib'}/*",
        MAIN,
        *args,
    ]


def progress_style() -> str:
    return "tty" if sys.stderr.isatty() else "lines"


def _last_json(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                parsed: dict[str, Any] = json.loads(line)
                return parsed
    return {}


def _run(cmd: list[str], timeout_s: float, cwd: Path, env: dict[str, str]) -> tuple[int, dict[str, Any], float]:
    t0 = time.monotonic()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=None, stdin=subprocess.DEVNULL, cwd=cwd, env=env)
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            code = -9
        out.seek(0)
        stdout = out.read()
    return code, _last_json(stdout), time.monotonic() - t0


def run_java(mode: str, args: Sequence[str], *, timeout_s: float, progress: str | None = None) -> dict[str, Any]:
    """``Bench <mode> <args>``; the result JSON with ``wall_s``, ``exit_code`` and ``command`` added."""
    home = Path(tempfile.mkdtemp(prefix="tidemq-bench-java-"))
    try:
        full = [mode, *args, "--progress", progress or progress_style(), "--timeout-s", str(int(timeout_s))]
        cmd = java_command(full, home)
        env = dict(os.environ, LC_ALL="C.UTF-8", ROCKETMQ_HOME=str(home))
        code, result, wall = _run(cmd, timeout_s + 45, home, env)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    if not result:
        result = {"ok": False, "error": f"no JSON result (exit code {code})"}
    result.setdefault("ok", code == 0)
    if code != 0:
        result["ok"] = False
    result.update(exit_code=code, wall_s=round(wall, 2), load="java", command=_shown(["Bench", *full]))
    return result


def _shown(cmd: Sequence[str]) -> str:
    return " ".join(cmd)


class JavaLoad:
    """One load JVM (``Bench serve``) serving many runs, so its JIT is warm after the first: the harness starts
    one per broker instance, warms it together with the broker, then runs the scenarios through it."""

    def __init__(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="tidemq-bench-java-"))
        self.proc: subprocess.Popen[str] | None = None
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.starts = 0

    def _ensure(self) -> subprocess.Popen[str]:
        if self.proc is not None and self.proc.poll() is None:
            return self.proc
        self.starts += 1
        env = dict(os.environ, LC_ALL="C.UTF-8", ROCKETMQ_HOME=str(self.home))
        self.lines = queue.Queue()
        proc = subprocess.Popen(
            java_command(["serve"], self.home),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            cwd=self.home,
            env=env,
            text=True,
            encoding="utf-8",
        )
        lines = self.lines

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, name="java-load-stdout", daemon=True).start()
        self.proc = proc
        return proc

    def run(self, mode: str, args: Sequence[str], *, timeout_s: float, progress: str | None = None) -> dict[str, Any]:
        """One ``Bench <mode> <args>`` run in the warm JVM; the result JSON with ``wall_s`` and ``command`` added."""
        full = [mode, *args, "--progress", progress or progress_style(), "--timeout-s", str(int(timeout_s))]
        t0 = time.monotonic()
        result: dict[str, Any] = {}
        proc = self._ensure()
        assert proc.stdin is not None
        try:
            proc.stdin.write("\t".join(full) + "\n")
            proc.stdin.flush()
        except OSError as exc:
            result = {"ok": False, "error": f"the load JVM is gone: {exc}"}
        deadline = t0 + timeout_s + 45
        while not result:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                self.close()
                result = {"ok": False, "error": f"no result within {timeout_s + 45:.0f} s; the load JVM was killed"}
                break
            if line is None:
                result = {"ok": False, "error": f"the load JVM exited with code {proc.wait(10)}"}
                break
            result = _last_json(line)
        result.setdefault("ok", False)
        result.update(wall_s=round(time.monotonic() - t0, 2), load="java", command=_shown(["Bench", *full]))
        return result

    def cpu_seconds(self) -> float:
        """CPU seconds the load JVM has used so far (0 when it is not running)."""
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        from bench.side_by_side.brokers import cpu_seconds

        return cpu_seconds([self.proc.pid])

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                with contextlib.suppress(OSError):
                    assert self.proc.stdin is not None
                    self.proc.stdin.close()
                try:
                    self.proc.wait(15)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
            self.proc = None
        shutil.rmtree(self.home, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------------
# tidemq's own Python load generator


def python_load_command() -> list[str] | None:
    """How to run ``tidemq bench``: the CLI when it has the sub-command, else its module directly; None if absent."""
    probe = subprocess.run(
        [sys.executable, "-m", "tidemq.cli.main", "bench", "--help"],
        capture_output=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    if probe.returncode == 0:
        return [sys.executable, "-m", "tidemq.cli.main", "bench"]
    shim = Path(__file__).resolve().parent / "pyload.py"
    cmd = [sys.executable, str(shim), "--help"]
    probe = subprocess.run(cmd, capture_output=True, cwd=REPO, timeout=60, check=False)
    if probe.returncode == 0:
        return [sys.executable, str(shim)]
    return None


def run_python(base: list[str], sub: str, args: Sequence[str], *, timeout_s: float) -> dict[str, Any]:
    """``tidemq bench <sub> <args>``; its report normalised to the Java load's keys where they differ."""
    cmd = [*base, sub, *args]
    if not sys.stderr.isatty():
        cmd.append("--no-progress")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    code, result, wall = _run(cmd, timeout_s + 30, REPO, env)
    if not result:
        result = {"ok": False, "error": f"no JSON result (exit code {code})"}
    else:
        result.setdefault("ok", code == 0 and int(result.get("errors", 0) or 0) == 0)
        result.setdefault("sent", result.get("count"))
        result.setdefault("received", result.get("count"))
    if code != 0:
        result["ok"] = False
    result.update(exit_code=code, wall_s=round(wall, 2), load="python", command=_shown(["tidemq", "bench", sub, *args]))
    return result
