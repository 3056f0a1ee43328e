"""Runs a :class:`~bench.side_by_side.plan.Plan` against both brokers, one at a time, and collects the results.

Order, per repetition: every ASYNC_FLUSH scenario on a fresh broker, then the SYNC_FLUSH ones on another fresh
broker, tidemq first in even repetitions and Apache first in odd ones (drift on a shared machine hits both). Then
the backlog phase: per broker and body size a fresh broker (quick mode: the last ASYNC_FLUSH broker), a backlog
filled with batched sends, resident memory and disk bytes measured, and the backlog drained ``drain_reps`` times
by push consumers of new groups. Every broker start is also a cold-start and idle-memory sample, and is followed by
an untimed warm-up of the broker and of the load's JVM together.
"""

from __future__ import annotations

import contextlib
import functools
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.side_by_side import loads
from bench.side_by_side.brokers import QUEUES, Broker, make_broker
from bench.side_by_side.plan import Plan, Scenario

BROKERS = ("tidemq", "apache")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Harness:
    def __init__(
        self,
        plan: Plan,
        work_dir: Path,
        *,
        brokers: tuple[str, ...] = BROKERS,
        python_load: list[str] | None = None,
        keep_data: bool = False,
        only: tuple[str, ...] = (),
    ) -> None:
        self.plan = plan
        self.work_dir = work_dir
        self.brokers = brokers
        self.python_load = python_load
        self.keep_data = keep_data
        self.only = only
        self.runs: list[dict[str, Any]] = []
        self.lifecycle: dict[str, dict[str, list[Any]]] = {
            b: {"cold_start_s": [], "ready_s": [], "rss_idle": [], "rss_backlog": [], "disk": [], "fill": []}
            for b in brokers
        }
        self.timings: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.settings: dict[str, Any] = {}
        self._instance = 0
        self._load: loads.JavaLoad | None = None
        self.log_progress: Callable[[str], None] = log

    @property
    def load(self) -> loads.JavaLoad:
        """The warm load JVM of the broker instance that runs now."""
        if self._load is None:
            self._load = loads.JavaLoad()
        return self._load

    # -- brokers

    def _start(self, kind: str, flush: str) -> Broker:
        self._instance += 1
        data = self.work_dir / f"{self._instance:02d}-{kind}-{flush.lower()}"
        shutil.rmtree(data, ignore_errors=True)
        t0 = time.monotonic()
        broker = make_broker(kind, data, flush)
        broker.start()
        log(f"{broker.label} ({flush}) ready in {broker.ready_s:.2f}s, first message in {broker.cold_start_s:.2f}s")
        self.settings.setdefault(kind, broker.settings())
        if flush == "ASYNC_FLUSH":
            life = self.lifecycle[kind]
            life["cold_start_s"].append(round(broker.cold_start_s, 3))
            life["ready_s"].append(round(broker.ready_s, 3))
            time.sleep(2.0)  # settle before reading idle memory
            life["rss_idle"].append(broker.rss())
        self._timing("start", kind, flush, time.monotonic() - t0)
        self._warm(broker)
        return broker

    def _warm(self, broker: Broker) -> None:
        """An untimed produce-and-drain on a fresh broker, so no scenario pays for its JIT or cold caches."""
        t0 = time.monotonic()
        secs = self.plan.broker_warmup_s
        if secs <= 0:
            return
        topic = "BenchWarmup"
        self._topic(broker, topic)
        base = ["--namesrv", broker.namesrv_addr, "--topic", topic]
        produced = self.load.run(
            "produce",
            [*base, "--threads", "16", "--warmup-s", "0", "--duration-s", str(secs)],
            timeout_s=secs + 60,
            progress="off",
        )
        n = int(produced.get("sent_total") or 0)
        if n:
            args = [*base, "--group", "bench_warmup", "--expect", str(n), "--idle-s", "5"]
            self.load.run("consume", args, timeout_s=120, progress="off")
        self._timing("warm", broker.kind, broker.flush, time.monotonic() - t0)

    def _stop(self, broker: Broker) -> None:
        t0 = time.monotonic()
        if self._load is not None:
            self._load.close()
            self._load = None
        broker.stop()
        if not self.keep_data:
            shutil.rmtree(broker.data_dir, ignore_errors=True)
        self._timing("stop", broker.kind, broker.flush, time.monotonic() - t0)

    def _timing(self, what: str, broker: str, detail: str, seconds: float) -> None:
        self.timings.append({"what": what, "broker": broker, "detail": detail, "seconds": round(seconds, 2)})

    def _topic(self, broker: Broker, topic: str) -> None:
        took = broker.create_topic(topic)
        if took > 2.0:
            self.problems.append(f"{broker.label}: the route of a new topic took {took:.1f} s to reach the name server")
            log(f"  {broker.label}: the route of {topic} took {took:.1f} s to reach the name server")

    # -- loads

    def _selected(self, s: Scenario) -> bool:
        return not self.only or any(o in s.key for o in self.only)

    def _record(self, scenario: str, broker: Broker, load: str, rep: int, result: dict[str, Any]) -> None:
        result = dict(result)
        if not broker.alive():
            result["ok"] = False
            result["error"] = (result.get("error") or "") + " (the broker process died)"
        self.runs.append({"scenario": scenario, "broker": broker.kind, "load": load, "rep": rep, "result": result})
        rate = result.get("msgs_per_s")
        lat = (result.get("latency_ms") or {}).get("p99")
        status = "ok" if result.get("ok") else f"FAILED: {result.get('error') or result.get('error_kinds')}"
        log(f"  {scenario} [{load}] on {broker.kind}: {rate} msgs/s, p99 {lat} ms, {status}")
        if not result.get("ok"):
            self.problems.append(f"{scenario} [{load}] on {broker.kind} rep {rep}: {status}")
        self._timing("load", broker.kind, f"{scenario}/{load}", float(result.get("wall_s", 0)))

    def _metered(self, broker: Broker, load: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run ``fn`` and add the CPU seconds the broker and the load used meanwhile, and per message."""
        b0, j0 = broker.cpu_seconds(), self.load.cpu_seconds()
        c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = fn()
        b1, j1 = broker.cpu_seconds(), self.load.cpu_seconds()
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        child = (c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime)
        load_cpu = (j1 - j0) if load == "java" else child
        n = result.get("sent_total") or result.get("received") or result.get("count") or 0
        result["broker_cpu_s"] = round(b1 - b0, 2)
        result["load_cpu_s"] = round(load_cpu, 2)
        result["messages_total"] = n
        result["broker_cpu_us_per_msg"] = round((b1 - b0) * 1e6 / n, 1) if n and b1 > b0 else None
        return result

    def _java_scenario(self, broker: Broker, s: Scenario, rep: int) -> None:
        topic = f"Bench_{s.key}_r{rep}"
        self._topic(broker, topic)
        base = ["--namesrv", broker.namesrv_addr, "--topic", topic, "--queues", str(QUEUES)]
        if s.kind == "produce":
            w, d = self.plan.warmup_s, self.plan.duration_s
            args = [*base, *s.java_args, "--warmup-s", str(w), "--duration-s", str(d)]
            result = self._metered(broker, "java", lambda: self.load.run("produce", args, timeout_s=w + d + 60))
        else:
            w, d = self.plan.e2e_warmup_s, self.plan.e2e_duration_s
            args = [*base, "--group", f"bench_e2e_{s.key}_r{rep}".replace("-", "_"), *s.java_args]
            args += ["--warmup-s", str(w), "--duration-s", str(d)]
            result = self._metered(broker, "java", lambda: self.load.run("e2e", args, timeout_s=w + d + 90))
        self._record(s.key, broker, "java", rep, result)

    def _python_scenario(self, broker: Broker, s: Scenario, rep: int) -> None:
        py = self.python_load
        if py is None or s.py_args is None:
            return
        topic = f"BenchPy_{s.key}_r{rep}"
        self._topic(broker, topic)
        base = ["--namesrv", broker.namesrv_addr, "--topic", topic, "--queues", str(QUEUES), *s.py_args]
        if s.kind == "produce":
            sub, secs, extra = "produce", self.plan.warmup_s + self.plan.duration_s, 60.0  # the whole run counts
        else:
            sub, secs, extra = "e2e", self.plan.e2e_warmup_s + self.plan.e2e_duration_s, 90.0
            base += ["--group", f"bench_py_e2e_{s.key}_r{rep}".replace("-", "_")]
        args = [*base, "--duration", str(secs)]
        result = self._metered(broker, "python", lambda: loads.run_python(py, sub, args, timeout_s=secs + extra))
        self._record(s.key, broker, "python", rep, result)

    def _scenarios_on(
        self, kind: str, flush: str, scenarios: list[Scenario], rep: int, backlog_sizes: tuple[int, ...] = ()
    ) -> None:
        if not scenarios and not backlog_sizes:
            return
        broker = self._start(kind, flush)
        try:
            for s in scenarios:
                for runner in (self._java_scenario, self._python_scenario):
                    if not broker.alive():
                        log(f"{broker.label} died; restarting it for the rest")
                        self.problems.append(f"{broker.label} ({flush}) died before {s.key} rep {rep}")
                        self._stop(broker)
                        broker = self._start(kind, flush)
                    try:
                        runner(broker, s, rep)
                    except Exception as exc:
                        self.problems.append(f"{s.key} on {kind} rep {rep}: {exc!r}")
                        log(f"  {s.key} on {kind}: {exc!r}")
            for size in backlog_sizes:
                self._backlog_guarded(functools.partial(self._backlog_on, broker, size), kind, size)
        finally:
            self._stop(broker)

    def _backlog_guarded(self, fn: Callable[[], None], kind: str, size: int) -> None:
        self.log_progress(f"backlog: {kind}, {self.plan.backlog:,} x {size} B")
        try:
            fn()
        except Exception as exc:
            self.problems.append(f"backlog {size} on {kind}: {exc!r}")
            log(f"  backlog {size} on {kind}: {exc!r}")

    # -- the backlog phase

    def _backlog(self, kind: str, size: int) -> None:
        broker = self._start(kind, "ASYNC_FLUSH")
        try:
            self._backlog_on(broker, size)
        finally:
            self._stop(broker)

    def _backlog_on(self, broker: Broker, size: int) -> None:
        n = self.plan.backlog
        kind = broker.kind
        key = f"drain-{'4k' if size == 4096 else size}"
        topic = f"BenchBacklog_{size}"
        self._topic(broker, topic)
        before = broker.store_bytes()
        fill = self.load.run(
            "produce",
            [
                *("--namesrv", broker.namesrv_addr, "--topic", topic, "--queues", str(QUEUES)),
                *("--mode", "sync", "--batch", "32", "--threads", "8", "--size", str(size)),
                *("--warmup-s", "0", "--duration-s", "900", "--max-count", str(n)),
            ],
            timeout_s=960,
        )
        stored = int(fill.get("sent_total") or 0)
        log(f"  backlog on {kind}: {stored:,} x {size} B at {fill.get('msgs_per_s')} msgs/s")
        self._timing("fill", kind, f"{n}x{size}", float(fill.get("wall_s", 0)))
        time.sleep(2.0)
        after = broker.store_bytes()
        life = self.lifecycle[kind]
        rates = {k: fill.get(k) for k in ("seconds", "msgs_per_s")}
        life["fill"].append({"size": size, "messages": stored, **rates})
        life["rss_backlog"].append({"size": size, "messages": stored, **broker.rss()})
        if stored:
            lo, hi = fill.get("commitlog_min_offset"), fill.get("commitlog_max_offset")
            life["disk"].append(
                {
                    "size": size,
                    "messages": stored,
                    "allocated_before": before["allocated"],
                    "allocated_after": after["allocated"],
                    "apparent_after": after["apparent"],
                    # the whole store (warm-up data and preallocated files included) per backlog message
                    "allocated_per_msg": round(after["allocated"] / stored, 1),
                    # what the fill added (a store that preallocates whole segments shows less than it writes)
                    "growth_per_msg": round((after["allocated"] - before["allocated"]) / stored, 1),
                    # the stored record: commit-log bytes per message, from the send results' offsets
                    "record_bytes": round((hi - lo) / (stored - 1), 1)
                    if lo is not None and hi and stored > 1
                    else None,
                }
            )
        if not stored:
            self.problems.append(f"backlog fill on {kind} stored nothing: {fill.get('error')}")
            return
        for i in range(self.plan.drain_reps):
            for attempt in ("", "_retry"):  # one retry: a consumer whose first rebalance found nothing to do
                group = f"bench_drain_{size}_{i}{attempt}"
                args = ["--namesrv", broker.namesrv_addr, "--topic", topic, "--group", group, "--expect", str(stored)]
                args += ["--idle-s", "20"]
                run = functools.partial(self.load.run, "consume", args, timeout_s=900)
                result = self._metered(broker, "java", run)
                self._record(key, broker, "java", i, result)
                if result.get("ok"):
                    break
        py = self.python_load
        if py is not None and size == 128:
            group = "bench_py_drain_128"
            pargs = ["--namesrv", broker.namesrv_addr, "--topic", topic, "--group", group, "--from-start"]
            pargs += ["--count", str(stored), "--idle-timeout", "20"]
            result = self._metered(broker, "python", lambda: loads.run_python(py, "consume", pargs, timeout_s=900))
            self._record(key, broker, "python", 0, result)

    # -- the profile

    def profile(self, svg: Path, seconds: int = 10) -> dict[str, Any]:
        """A py-spy flame graph of tidemq under the sync 64-thread 128 B load (needs root or ptrace rights)."""
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(spy).exists():
            return {"ok": False, "error": "py-spy not installed (pip install py-spy)"}
        broker = self._start("tidemq", "ASYNC_FLUSH")
        out: dict[str, Any] = {}
        try:
            topic = "BenchProfile"
            self._topic(broker, topic)
            args = ["--namesrv", broker.namesrv_addr, "--topic", topic, "--mode", "sync", "--threads", "64"]
            args += ["--size", "128", "--warmup-s", "3", "--duration-s", str(seconds + 2)]
            box: dict[str, Any] = {}
            load = threading.Thread(target=lambda: box.update(self.load.run("produce", args, timeout_s=90)))
            load.start()
            time.sleep(4.0)
            svg.parent.mkdir(parents=True, exist_ok=True)
            pid = broker.pids()[0]
            cmd = [spy, "record", "-o", str(svg), "--pid", str(pid), "--duration", str(seconds)]
            spy_run = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
            load.join(120)
            out = {
                "ok": spy_run.returncode == 0 and svg.is_file(),
                "command": f"py-spy record -o {svg.name} --pid <tidemq pid> --duration {seconds}",
                "stderr": spy_run.stderr[-2000:],
                "load": {k: box.get(k) for k in ("command", "msgs_per_s", "latency_ms")},
            }
        finally:
            self._stop(broker)
        return out

    # -- everything

    def run(self, progress: Callable[[str], None] = log) -> None:
        self.log_progress = progress
        plan = self.plan
        async_s = [s for s in plan.scenarios if s.flush == "ASYNC_FLUSH" and self._selected(s)]
        sync_s = [s for s in plan.scenarios if s.flush == "SYNC_FLUSH" and self._selected(s)]
        backlog = plan.backlog_sizes if not self.only or any("drain" in o for o in self.only) else ()
        for rep in range(plan.reps):
            order = self.brokers if rep % 2 == 0 else tuple(reversed(self.brokers))
            inline = backlog if plan.backlog_inline and rep == plan.reps - 1 else ()
            for kind in order:
                for flush, scenarios, backlog_here in (("ASYNC_FLUSH", async_s, inline), ("SYNC_FLUSH", sync_s, ())):
                    progress(f"rep {rep + 1}/{plan.reps}: {kind}, {flush} ({len(scenarios)} scenarios)")
                    try:
                        self._scenarios_on(kind, flush, scenarios, rep, backlog_here)
                    except Exception as exc:  # a broker that does not start: note it, go on with the rest
                        self.problems.append(f"{kind} {flush} rep {rep}: {exc!r}")
                        log(f"  {kind} {flush} rep {rep}: {exc!r}")
        if not plan.backlog_inline:
            for size in backlog:
                for kind in self.brokers:
                    self._backlog_guarded(functools.partial(self._backlog, kind, size), kind, size)

    def results(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "lifecycle": self.lifecycle,
            "timings": self.timings,
            "problems": self.problems,
            "broker_settings": self.settings,
        }


def cleanup_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        shutil.rmtree(path)
