"""Build and run the Go driver (``tests/interop/go``, official ``github.com/apache/rocketmq-client-go/v2``).

The Go program has the same ``produce`` and ``push-consume`` sub-commands and JSON-lines output as
``cpp_driver.py``. It is built with ``go build`` into a cache directory OUTSIDE the repository, keyed by a hash of
the Go sources, ``go.mod``, ``go.sum`` and the Go version, so it is rebuilt only when one of them changed::

    ${TIDEMQ_GO_DRIVER_CACHE:-${XDG_CACHE_HOME:-~/.cache}/tidemq/interop-go}/rmq-go-driver-<hash>

Command line (builds first if needed)::

    python tests/interop/go_driver.py build            # prints the binary's path
    python tests/interop/go_driver.py produce --namesrv A --topic T --group G --count N [--tag X] [--keys K]
        [--prop k=v ...] [--body TEXT] [--mode sync|oneway|orderly] [--shard S]
    python tests/interop/go_driver.py push-consume --namesrv A --topic T --group G --expr "TagA || TagB"
        --expect N --timeout-s S [--model CLUSTERING|BROADCASTING] [--instance NAME] [--exit-after-s S]
        [--from first|last] [--orderly] [--fail-times K]

The Go client logs through logrus to stderr; the driver sets its level to ``error`` (``--log-level`` or
``ROCKETMQ_GO_LOG_LEVEL`` to change it). The helpers below reuse ``run_driver``/``BackgroundDriver`` from
``cpp_driver.py``.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

GO_MODULE_DIR = Path(__file__).resolve().parent / "go"
BINARY_NAME = "rmq-go-driver"
BUILD_TIMEOUT_S = 900


def _load_cpp_driver() -> ModuleType:
    """``cpp_driver`` from this directory, whether or not ``tests/interop`` is on ``sys.path`` or a package."""
    module = sys.modules.get("cpp_driver")
    if module is not None:
        return module
    spec = importlib.util.spec_from_file_location("cpp_driver", Path(__file__).resolve().with_name("cpp_driver.py"))
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["cpp_driver"] = module
    spec.loader.exec_module(module)
    return module


_cpp = _load_cpp_driver()
DriverResult = _cpp.DriverResult
BackgroundDriver = _cpp.BackgroundDriver
DriverError = _cpp.DriverError


def go_available() -> bool:
    return shutil.which("go") is not None


def cache_dir() -> Path:
    override = os.environ.get("TIDEMQ_GO_DRIVER_CACHE")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tidemq" / "interop-go"


def _build_env() -> dict[str, str]:
    env = dict(os.environ)
    # -mod=mod: resolve from go.mod/go.sum (committed) without a vendor dir; no VCS stamping of the dirty tree.
    env["GOFLAGS"] = "-mod=mod -buildvcs=false"
    return env


def source_hash() -> str:
    """Hash of everything the binary depends on: go.mod, go.sum, the .go files and the Go toolchain version."""
    digest = hashlib.sha256()
    version = subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True, timeout=60, check=True)
    digest.update(version.stdout.strip().encode())
    files = sorted(
        path
        for path in GO_MODULE_DIR.rglob("*")
        if path.is_file() and (path.suffix == ".go" or path.name in {"go.mod", "go.sum"})
    )
    for path in files:
        digest.update(str(path.relative_to(GO_MODULE_DIR)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def build(*, force: bool = False) -> Path:
    """Return the driver binary, building it first if the sources changed (safe across concurrent callers)."""
    if not go_available():
        raise RuntimeError("the Go toolchain (`go`) is not on PATH")
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    binary = directory / f"{BINARY_NAME}-{source_hash()}"
    if binary.exists() and not force:
        return binary
    with open(directory / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same hash
        if binary.exists() and not force:
            return binary
        partial = directory / f".{binary.name}.{os.getpid()}.tmp"
        proc = subprocess.run(
            ["go", "build", "-trimpath", "-o", str(partial), "."],
            cwd=GO_MODULE_DIR,
            env=_build_env(),
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
        if proc.returncode != 0:
            partial.unlink(missing_ok=True)
            raise RuntimeError(f"go build failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        os.replace(partial, binary)
        _prune(directory, keep=3)
    return binary


def _prune(directory: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest driver binaries (older source versions)."""
    binaries = sorted(directory.glob(f"{BINARY_NAME}-*"), key=lambda path: path.stat().st_mtime, reverse=True)
    for old in binaries[keep:]:
        old.unlink(missing_ok=True)


def go_argv(command: str, **options: Any) -> list[str]:
    """The command line running the Go driver's ``command`` with ``options`` (flags as in ``cpp_driver``)."""
    return [str(build()), command, *_cpp._flags(options)]


def _env(home: Path | str | None) -> dict[str, str]:
    env: dict[str, str] = _cpp.driver_env(home)
    return env


def produce(
    namesrv: str,
    topic: str,
    group: str,
    *,
    count: int = 1,
    mode: str = "sync",
    tag: str | None = None,
    keys: str | None = None,
    props: Mapping[str, str] | None = None,
    body: str | None = None,
    shard: int | None = None,
    timeout_s: float = 60,
    home: Path | str | None = None,
    check: bool = True,
) -> Any:
    """Send ``count`` messages with the Go producer; returns a ``cpp_driver.DriverResult``."""
    argv = go_argv(
        "produce",
        namesrv=namesrv,
        topic=topic,
        group=group,
        count=count,
        mode=mode,
        tag=tag,
        keys=keys,
        prop=props,
        body=body,
        shard=shard,
        timeout_s=timeout_s,
    )
    return _cpp.run_driver(argv, timeout_s=timeout_s + 60, env=_env(home), check=check)


def _push_argv(namesrv: str, topic: str, group: str, **options: Any) -> list[str]:
    return go_argv("push-consume", namesrv=namesrv, topic=topic, group=group, **options)


def push_consume(
    namesrv: str,
    topic: str,
    group: str,
    *,
    expect: int | None = None,
    expr: str = "*",
    timeout_s: float = 60,
    model: str = "CLUSTERING",
    instance: str | None = None,
    exit_after_s: float | None = None,
    from_where: str = "last",
    orderly: bool = False,
    fail_times: int = 0,
    home: Path | str | None = None,
    check: bool = True,
) -> Any:
    """Run a Go push consumer until ``expect`` distinct messages were acknowledged (or ``exit_after_s``).

    ``from_where`` applies to a group with no stored offset. ``"last"`` is the Go client's default and what the C++
    client always uses; a new group then sees messages sent before it started only because the broker answers
    QUERY_CONSUMER_OFFSET with 0 while the queue still starts at offset 0 (spec 3.7), as Apache does.
    """
    argv = _push_argv(
        namesrv,
        topic,
        group,
        expr=expr,
        expect=expect,
        timeout_s=timeout_s,
        model=model,
        instance=instance,
        exit_after_s=exit_after_s,
        orderly=orderly,
        fail_times=fail_times or None,
        **{"from": from_where},
    )
    limit_s = exit_after_s if exit_after_s is not None else timeout_s
    return _cpp.run_driver(argv, timeout_s=limit_s + 90, env=_env(home), check=check)


def start_push_consumer(
    namesrv: str,
    topic: str,
    group: str,
    *,
    expect: int | None = None,
    expr: str = "*",
    timeout_s: float = 600,
    model: str = "CLUSTERING",
    instance: str | None = None,
    exit_after_s: float | None = None,
    from_where: str = "last",
    orderly: bool = False,
    fail_times: int = 0,
    home: Path | str | None = None,
) -> Any:
    """Start a Go push consumer in the background (a ``cpp_driver.BackgroundDriver``)."""
    if expect is None and exit_after_s is None:
        exit_after_s = timeout_s
    argv = _push_argv(
        namesrv,
        topic,
        group,
        expr=expr,
        expect=expect,
        timeout_s=timeout_s,
        model=model,
        instance=instance,
        exit_after_s=exit_after_s,
        orderly=orderly,
        fail_times=fail_times or None,
        **{"from": from_where},
    )
    return _cpp.BackgroundDriver(argv, env=_env(home))


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0 if argv else 2
    if argv[0] == "build":
        print(build(force="--force" in argv[1:]))
        return 0
    binary = build()
    os.execv(binary, [str(binary), *argv])  # replaces this process; the Go program owns the exit status
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
