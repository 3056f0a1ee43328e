"""Run the official RocketMQ Java clients (4.9.x and 5.x) and mqadmin from Python tests and benchmarks.

The driver is the Maven project in ``tests/interop/java`` (``tidemq.interop.Driver``). :func:`ensure_built` builds
it for one client version into ``tests/interop/java/target/rmq-<version>/`` when its sources changed (Maven offline
first, online if something is missing from ``~/.m2``); every sub-command prints JSON lines, parsed here into
:class:`DriverResult`.

    res = produce("4", namesrv, "TopicA", 10, tag="TagA")          # "4"/"5" or a full version like "4.9.8"
    got = push_consume("5", namesrv, "TopicA", "GroupA", expect=10)
    out = run_mqadmin("5", namesrv, ["topicRoute", "-t", "TopicA"])

Everything is bounded in time; failures raise :class:`JavaDriverError` with the command, exit code and output tails.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CLIENT_VERSIONS",
    "JAVA_PROJECT",
    "DriverProcess",
    "DriverResult",
    "JavaDriverError",
    "MQAdminResult",
    "classpath",
    "ensure_built",
    "lite_pull",
    "produce",
    "push_consume",
    "resolve_version",
    "run_driver",
    "run_mqadmin",
    "start_driver",
    "start_push_consume",
]

# The newest 4.9.x and 5.x releases of org.apache.rocketmq:rocketmq-client (rocketmq-tools at the same version).
CLIENT_VERSIONS: dict[str, str] = {"4": "4.9.8", "5": "5.5.0"}
JAVA_PROJECT = Path(__file__).resolve().parent / "java"
DRIVER_MAIN = "tidemq.interop.Driver"
# Apache's MQAdminStartup.main0 plus an immediate exit (saves ~3 s per call; see MQAdmin.java)
MQADMIN_MAIN = "tidemq.interop.MQAdmin"
# Small, quick-starting JVMs for functional tests; benchmarks pass their own jvm_args.
DEFAULT_JVM_ARGS: tuple[str, ...] = ("-Xms64m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")
_BUILD_TIMEOUT_S = 900.0
_GRACE_S = 30.0  # the driver's own watchdog halts it this long after --timeout-s; we kill it 15 s after that

# mqadmin 4.9.x configures logback from $ROCKETMQ_HOME/conf/logback_tools.xml and does nothing without it.
_LOGBACK_TOOLS_XML = """<?xml version="1.0" encoding="UTF-8"?>
<!-- tidemq: mqadmin logs go to stderr at WARN; stdout keeps only the command's output. -->
<configuration>
  <appender name="STDERR" class="ch.qos.logback.core.ConsoleAppender">
    <target>System.err</target>
    <encoder><pattern>%d{HH:mm:ss.SSS} %-5level %logger{0} - %msg%n</pattern></encoder>
  </appender>
  <root level="WARN"><appender-ref ref="STDERR"/></root>
</configuration>
"""


class JavaDriverError(RuntimeError):
    """Java/Maven missing, the build failed, or a driver or mqadmin run failed (the message has the details)."""


# ---------------------------------------------------------------------------------------------------------------------
# Tools and the build


def resolve_version(version: str) -> str:
    """Accepts the aliases "4" and "5" or a full version such as "4.9.8"."""
    return CLIENT_VERSIONS.get(version, version)


def _tool(name: str, hint: str) -> str:
    home = os.environ.get("JAVA_HOME")
    if name in ("java", "javac") and home and (Path(home) / "bin" / name).is_file():
        return str(Path(home) / "bin" / name)
    path = shutil.which(name)
    if path is None:
        raise JavaDriverError(f"{name!r} not found on PATH: {hint}")
    return path


def _java() -> str:
    return _tool("java", "the Java interop tests need a JDK 17 (Debian: apt-get install openjdk-17-jdk-headless)")


def _mvn() -> str:
    return _tool("mvn", "the Java interop tests build their driver with Maven 3.6.3+ (Debian: apt-get install maven)")


def target_dir(version: str) -> Path:
    return JAVA_PROJECT / "target" / f"rmq-{resolve_version(version)}"


def _sources_digest(version: str) -> str:
    h = hashlib.sha256(f"rocketmq.version={version}\n".encode())
    files = [JAVA_PROJECT / "pom.xml", *sorted(p for p in (JAVA_PROJECT / "src").rglob("*") if p.is_file())]
    for path in files:
        h.update(str(path.relative_to(JAVA_PROJECT)).encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])


def ensure_built(version: str) -> Path:
    """Build the driver for ``version`` unless an up-to-date build exists; returns ``target/rmq-<version>``.

    Up to date means: the jar and lib/ exist and the stamp matches a digest of pom.xml, src/ and the version.
    Runs ``mvn -q -B -o clean package`` (everything in ~/.m2 already), else the same online.
    """
    version = resolve_version(version)
    target = target_dir(version)
    stamp = target / ".tidemq-build-stamp"
    _java()
    with _locked(JAVA_PROJECT / "target" / f".build-{version}.lock"):
        want = _sources_digest(version)
        if stamp.is_file() and stamp.read_text() == want and (target / "tidemq-interop-driver.jar").is_file():
            return target
        mvn = _mvn()
        base = [mvn, "-q", "-B", "-f", str(JAVA_PROJECT / "pom.xml"), f"-Drocketmq.version={version}"]
        result = None
        for offline in (True, False):
            cmd = [*base, *(["-o"] if offline else []), "clean", "package"]
            try:
                result = subprocess.run(cmd, capture_output=True, text=True, timeout=_BUILD_TIMEOUT_S, check=False)
            except subprocess.TimeoutExpired as e:
                raise JavaDriverError(f"Maven build timed out after {_BUILD_TIMEOUT_S:.0f}s: {' '.join(cmd)}") from e
            if result.returncode == 0:
                break
        assert result is not None
        if result.returncode != 0:
            raise JavaDriverError(
                f"building the Java driver for rocketmq-client {version} failed "
                f"({' '.join(result.args)}):\n{_tail(result.stdout + result.stderr, 60)}"
            )
        if not (target / "tidemq-interop-driver.jar").is_file() or not (target / "lib").is_dir():
            raise JavaDriverError(f"Maven succeeded but {target} lacks tidemq-interop-driver.jar or lib/")
        stamp.write_text(want)
    return target


def classpath(version: str) -> str:
    target = ensure_built(version)
    return f"{target / 'tidemq-interop-driver.jar'}{os.pathsep}{target / 'lib'}/*"


def _java_cmd(version: str, main: str, home: Path, jvm_args: Sequence[str]) -> list[str]:
    return [
        _java(),
        *jvm_args,
        "-Dfile.encoding=UTF-8",
        f"-Duser.home={home}",
        f"-Drocketmq.client.logRoot={home / 'logs'}",
        "-Drocketmq.client.logLevel=WARN",
        "-cp",
        classpath(version),
        main,
    ]


def _env(home: Path) -> dict[str, str]:
    # argv is decoded with the locale's charset: make non-ASCII tags/keys/properties arrive intact
    return dict(os.environ, LC_ALL="C.UTF-8", LANG="C.UTF-8", ROCKETMQ_HOME=str(home))


# ---------------------------------------------------------------------------------------------------------------------
# Driver runs


@dataclass
class DriverResult:
    """A finished driver run: exit code, parsed JSON lines (by "type"), stderr."""

    version: str
    command: list[str]
    returncode: int
    lines: list[dict[str, Any]]
    stderr: str
    elapsed_s: float
    home: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("type") == kind]

    @property
    def sent(self) -> list[dict[str, Any]]:
        return self.of_type("sent")

    @property
    def received(self) -> list[dict[str, Any]]:
        return self.of_type("received")

    @property
    def errors(self) -> list[dict[str, Any]]:
        return self.of_type("error") + self.of_type("send_error")

    @property
    def summary(self) -> dict[str, Any]:
        found = self.of_type("summary")
        return found[-1] if found else {}

    def describe(self) -> str:
        shown = [json.dumps(line)[:400] for line in self.lines[-8:]]
        return (
            f"rocketmq-client {self.version}: {' '.join(self.command[-12:])}\n"
            f"exit code {self.returncode} after {self.elapsed_s:.1f}s; last JSON lines:\n  "
            + "\n  ".join(shown)
            + f"\nstderr tail:\n{_tail(self.stderr, 30)}"
            + (f"\nclient home (logs): {self.home}" if self.home else "")
        )


def _parse_lines(stdout: str) -> list[dict[str, Any]]:
    lines = []
    for raw in stdout.splitlines():
        raw = raw.strip()
        if raw.startswith("{"):
            with contextlib.suppress(ValueError):
                lines.append(json.loads(raw))
    return lines


class DriverProcess:
    """A driver sub-command running in the background (e.g. a consumer started before the producer)."""

    def __init__(
        self, version: str, sub: str, args: Sequence[str], *, timeout_s: float, jvm_args: Sequence[str]
    ) -> None:
        self.version = resolve_version(version)
        self.timeout_s = timeout_s
        args = list(args)
        if "--timeout-s" not in args:
            args += ["--timeout-s", str(timeout_s)]
        ensure_built(self.version)  # before anything is created: a missing JDK/Maven raises here
        self.home = Path(tempfile.mkdtemp(prefix=f"tidemq-java-{self.version}-"))
        self.command = [*_java_cmd(self.version, DRIVER_MAIN, self.home, jvm_args), sub, *args]
        self._out = (self.home / "stdout.jsonl").open("w+b")
        self._err = (self.home / "stderr.log").open("w+b")
        self._t0 = time.monotonic()
        self.proc = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._err,
            env=_env(self.home),
            cwd=self.home,
        )

    def lines_so_far(self) -> list[dict[str, Any]]:
        return _parse_lines((self.home / "stdout.jsonl").read_text("utf-8", "replace"))

    def wait(self, *, check: bool = True) -> DriverResult:
        """Wait for the run to end. A failed run raises :class:`JavaDriverError` and keeps its home directory
        (client logs) for the reader of the error; with ``check=False`` a failure is the caller's to judge from
        the result's output, and the home is removed as after a success, so expected failures leave nothing."""
        try:
            self.proc.wait(timeout=self.timeout_s + _GRACE_S + 15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        elapsed = time.monotonic() - self._t0
        for fh in (self._out, self._err):
            fh.close()
        result = DriverResult(
            version=self.version,
            command=self.command,
            returncode=self.proc.returncode,
            lines=_parse_lines((self.home / "stdout.jsonl").read_text("utf-8", "replace")),
            stderr=(self.home / "stderr.log").read_text("utf-8", "replace"),
            elapsed_s=elapsed,
            home=self.home,
        )
        if result.returncode != 0 and check:
            raise JavaDriverError(f"Java driver failed.\n{result.describe()}")
        shutil.rmtree(self.home, ignore_errors=True)  # the client logs are kept only for a raised failure
        result.home = None
        return result

    def kill(self) -> None:
        """Stop a run that is no longer wanted (its home directory with the logs is removed)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for fh in (self._out, self._err):
            fh.close()
        shutil.rmtree(self.home, ignore_errors=True)


def start_driver(
    version: str,
    sub: str,
    args: Sequence[str],
    *,
    timeout_s: float = 60.0,
    jvm_args: Sequence[str] = DEFAULT_JVM_ARGS,
) -> DriverProcess:
    """Start ``Driver <sub> <args>`` in the background; ``.wait()`` gives the :class:`DriverResult`."""
    return DriverProcess(version, sub, args, timeout_s=timeout_s, jvm_args=jvm_args)


def run_driver(
    version: str,
    sub: str,
    args: Sequence[str],
    *,
    timeout_s: float = 60.0,
    check: bool = True,
    jvm_args: Sequence[str] = DEFAULT_JVM_ARGS,
) -> DriverResult:
    """Run ``Driver <sub> <args>`` to completion (``--timeout-s`` added unless given)."""
    return start_driver(version, sub, args, timeout_s=timeout_s, jvm_args=jvm_args).wait(check=check)


def _produce_args(
    namesrv: str,
    topic: str,
    count: int,
    *,
    mode: str,
    tag: str | None,
    keys: str | None,
    props: Mapping[str, str] | None,
    body: str | bytes | None,
    body_size: int | None,
    group: str | None,
    extra: Sequence[str],
) -> list[str]:
    args = ["--namesrv", namesrv, "--topic", topic, "--count", str(count), "--mode", mode]
    if tag is not None:
        args += ["--tag", tag]
    if keys is not None:
        args += ["--keys", keys]
    for k, v in (props or {}).items():
        args += ["--prop", f"{k}={v}"]
    if isinstance(body, bytes):
        args += ["--body-b64", base64.b64encode(body).decode()]
    elif body is not None:
        args += ["--body", body]
    if body_size is not None:
        args += ["--body-size", str(body_size)]
    if group is not None:
        args += ["--group", group]
    return [*args, *extra]


def produce(
    version: str,
    namesrv: str,
    topic: str,
    count: int,
    *,
    mode: str = "sync",
    tag: str | None = None,
    keys: str | None = None,
    props: Mapping[str, str] | None = None,
    body: str | bytes | None = None,
    body_size: int | None = None,
    group: str | None = None,
    extra: Sequence[str] = (),
    timeout_s: float = 60.0,
    check: bool = True,
) -> DriverResult:
    """``produce``: "{i}" in ``body`` (str), ``keys``, ``tag`` and property values becomes the message index."""
    args = _produce_args(
        namesrv,
        topic,
        count,
        mode=mode,
        tag=tag,
        keys=keys,
        props=props,
        body=body,
        body_size=body_size,
        group=group,
        extra=extra,
    )
    return run_driver(version, "produce", args, timeout_s=timeout_s, check=check)


def _consume_args(
    namesrv: str, topic: str, group: str, expect: int, *, expr: str | None, sql: str | None, model: str
) -> list[str]:
    args = ["--namesrv", namesrv, "--topic", topic, "--group", group, "--expect", str(expect), "--model", model]
    if sql is not None:
        args += ["--sql", sql]
    elif expr is not None:
        args += ["--expr", expr]
    return args


def _push_args(
    namesrv: str,
    topic: str,
    group: str,
    expect: int,
    *,
    expr: str | None,
    sql: str | None,
    model: str,
    orderly: bool,
    extra: Sequence[str],
) -> list[str]:
    args = _consume_args(namesrv, topic, group, expect, expr=expr, sql=sql, model=model)
    if orderly:
        args.append("--orderly")
    return [*args, *extra]


def push_consume(
    version: str,
    namesrv: str,
    topic: str,
    group: str,
    expect: int,
    *,
    expr: str | None = "*",
    sql: str | None = None,
    model: str = "CLUSTERING",
    orderly: bool = False,
    extra: Sequence[str] = (),
    timeout_s: float = 60.0,
    check: bool = True,
) -> DriverResult:
    """``push-consume`` (DefaultMQPushConsumer) until ``expect`` distinct messages arrived."""
    args = _push_args(namesrv, topic, group, expect, expr=expr, sql=sql, model=model, orderly=orderly, extra=extra)
    return run_driver(version, "push-consume", args, timeout_s=timeout_s, check=check)


def start_push_consume(
    version: str,
    namesrv: str,
    topic: str,
    group: str,
    expect: int,
    *,
    expr: str | None = "*",
    sql: str | None = None,
    model: str = "CLUSTERING",
    orderly: bool = False,
    extra: Sequence[str] = (),
    timeout_s: float = 60.0,
) -> DriverProcess:
    """:func:`push_consume` in the background (start the consumer, produce, then ``.wait()``)."""
    args = _push_args(namesrv, topic, group, expect, expr=expr, sql=sql, model=model, orderly=orderly, extra=extra)
    return start_driver(version, "push-consume", args, timeout_s=timeout_s)


def lite_pull(
    version: str,
    namesrv: str,
    topic: str,
    group: str,
    expect: int,
    *,
    expr: str | None = "*",
    sql: str | None = None,
    model: str = "CLUSTERING",
    extra: Sequence[str] = (),
    timeout_s: float = 60.0,
    check: bool = True,
) -> DriverResult:
    """``lite-pull`` (DefaultLitePullConsumer, subscribe mode) until ``expect`` distinct messages arrived."""
    args = [*_consume_args(namesrv, topic, group, expect, expr=expr, sql=sql, model=model), *extra]
    return run_driver(version, "lite-pull", args, timeout_s=timeout_s, check=check)


# ---------------------------------------------------------------------------------------------------------------------
# mqadmin


@dataclass
class MQAdminResult:
    version: str
    command: list[str]
    returncode: int
    stdout: str
    stderr: str
    elapsed_s: float

    @property
    def failed(self) -> bool:
        # MQAdminStartup exits 0 even when the sub-command fails: it prints "<name> command failed" and a stack trace
        text = self.stdout + self.stderr
        return self.returncode != 0 or " command failed" in text or "not exist" in text.split("\n", 1)[0]


def run_mqadmin(
    version: str,
    namesrv: str,
    args: Sequence[str],
    *,
    timeout_s: float = 60.0,
    check: bool = True,
    jvm_args: Sequence[str] = DEFAULT_JVM_ARGS,
) -> MQAdminResult:
    """``mqadmin <args[0]> -n <namesrv> <args[1:]>`` with rocketmq-tools at the client version."""
    if not args:
        raise ValueError("run_mqadmin needs a sub-command, e.g. ['clusterList']")
    version = resolve_version(version)
    with tempfile.TemporaryDirectory(prefix=f"tidemq-mqadmin-{version}-") as tmp:
        home = Path(tmp)
        (home / "conf").mkdir()
        (home / "conf" / "logback_tools.xml").write_text(_LOGBACK_TOOLS_XML)
        cmd = [
            *_java_cmd(version, MQADMIN_MAIN, home, jvm_args),
            args[0],
            "-n",
            namesrv,
            *args[1:],
        ]
        cmd.insert(1, f"-Drocketmq.home.dir={home}")
        t0 = time.monotonic()
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout_s, env=_env(home), cwd=home, check=False
            )
        except subprocess.TimeoutExpired as e:
            raise JavaDriverError(f"mqadmin {args[0]} ({version}) timed out after {timeout_s:.0f}s") from e
        result = MQAdminResult(version, cmd, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0)
    if check and result.failed:
        raise JavaDriverError(
            f"mqadmin {' '.join(args)} (rocketmq-tools {version}) failed, exit code {result.returncode}:\n"
            f"stdout:\n{_tail(result.stdout)}\nstderr:\n{_tail(result.stderr)}"
        )
    return result


# ---------------------------------------------------------------------------------------------------------------------
# CLI: python tests/interop/java_driver.py build [VERSION...]
#                                         run VERSION SUB-COMMAND ARGS...
#                                         mqadmin VERSION NAMESRV ARGS...


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="java_driver", description="the official RocketMQ Java clients, driven")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_build = sub.add_parser("build", help="build the driver (default: every version in CLIENT_VERSIONS)")
    p_build.add_argument("versions", nargs="*")
    p_run = sub.add_parser("run", help="run a driver sub-command; prints its JSON lines")
    p_run.add_argument("version")
    p_run.add_argument("args", nargs=argparse.REMAINDER)
    p_admin = sub.add_parser("mqadmin", help="run mqadmin against a name server")
    p_admin.add_argument("version")
    p_admin.add_argument("namesrv")
    p_admin.add_argument("args", nargs=argparse.REMAINDER)
    ns = parser.parse_args(argv)
    try:
        if ns.cmd == "build":
            for v in ns.versions or sorted(set(CLIENT_VERSIONS.values())):
                t0 = time.monotonic()
                print(json.dumps({"version": v, "target": str(ensure_built(v)), "s": round(time.monotonic() - t0, 1)}))
            return 0
        if ns.cmd == "run":
            if not ns.args:
                parser.error("run needs a sub-command")
            res = run_driver(ns.version, ns.args[0], ns.args[1:], check=False)
            for line in res.lines:
                print(json.dumps(line, ensure_ascii=False))
            if res.returncode != 0:
                print(res.describe(), file=sys.stderr)
            return res.returncode
        out = run_mqadmin(ns.version, ns.namesrv, ns.args, check=False)
        sys.stdout.write(out.stdout)
        sys.stderr.write(out.stderr)
        return 1 if out.failed else 0
    except JavaDriverError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
