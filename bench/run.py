#!/usr/bin/env python3
"""tidemq and Apache RocketMQ side by side: one harness, one load, both brokers, every figure a ratio.

    python bench/run.py --quick            # a subset, 1 run each, under 5 minutes
    python bench/run.py --full             # every scenario, medians of 3 runs, under 30 minutes
    python bench/run.py --quick --profile  # also a py-spy flame graph of tidemq under load (needs root)
    python bench/run.py --report-only bench/results/<file>.json   # regenerate the doc and charts

Writes bench/results/<date>-<host>[-quick].json and regenerates the generated part of docs/benchmarks.md (between
its bench:begin/bench:end markers) and the charts in docs/img/. Needs a JDK 17 and Maven (the load is the official
Java client, bench/java; Apache RocketMQ's jars come from Maven Central into ~/.cache/tidemq) and matplotlib.
Servers listen on 127.0.0.1 only; every load is bounded in count and time; only processes started here are stopped.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench.` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.peers.apache_rocketmq import APACHE_ROCKETMQ_VERSION, JVM_FLAGS, server_classpath
from bench.side_by_side import harness, limits, loads, report
from bench.side_by_side.brokers import APACHE_BROKER_HEAP, APACHE_NAMESRV_HEAP, QUEUES, tidemq_version
from bench.side_by_side.plan import Plan, full_plan, quick_plan

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
DOC = REPO / "docs" / "benchmarks.md"
IMG = REPO / "docs" / "img"


def _cmd_out(cmd: list[str]) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False, cwd=REPO)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (p.stdout or p.stderr).strip()


def _filesystem(path: Path) -> str:
    best, fs, dev = "", "?", "?"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            mnt = parts[1]
            if str(path).startswith(mnt) and len(mnt) > len(best):
                best, fs, dev = mnt, parts[2], parts[0]
    except OSError:
        pass
    return f"{dev} ({fs}) mounted on {best}"


def machine(work_dir: Path) -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0]) * 1024
    except (OSError, IndexError, ValueError):
        mem = 0
    return {
        "host": socket.gethostname(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "mem_gib": mem / 2**30,
        "kernel": f"{platform.system()} {platform.release()}",
        "filesystem": _filesystem(work_dir.resolve()),
        "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def versions() -> dict[str, str]:
    try:
        from importlib.metadata import version

        uvloop = version("uvloop")
    except Exception:
        uvloop = "not installed"
    dirty = _cmd_out(["git", "status", "--porcelain", "--untracked-files=no"])
    git = _cmd_out(["git", "rev-parse", "--short", "HEAD"]) + (" + uncommitted changes" if dirty else "")
    java = _cmd_out(["java", "-version"]).splitlines()
    return {
        "tidemq": tidemq_version(),
        "git": git,
        "python": platform.python_version(),
        "uvloop": uvloop,
        "apache": APACHE_ROCKETMQ_VERSION,
        "java_client": loads.CLIENT_VERSION,
        "java": java[1] if len(java) > 1 else (java[0] if java else "?"),
    }


def build_plan(args: argparse.Namespace) -> Plan:
    plan = full_plan() if args.full else quick_plan()
    if args.reps:
        plan.reps = args.reps
        plan.drain_reps = min(plan.drain_reps, args.reps) if args.quick else args.reps
    if args.duration:
        plan.duration_s = plan.e2e_duration_s = args.duration
    if args.backlog:
        plan.backlog = args.backlog
    return plan


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/run.py", description=(__doc__ or "").split("\n\n")[0])
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--quick", action="store_true", help="a subset, 1 run each (< 5 min)")
    mode.add_argument("--full", action="store_true", help="every scenario, 3 runs each (< 30 min)")
    mode.add_argument("--report-only", type=Path, metavar="RESULTS_JSON", help="regenerate doc + charts only")
    p.add_argument("--profile", action="store_true", help="also record a py-spy flame graph of tidemq (root)")
    p.add_argument("--brokers", default="tidemq,apache", help="which brokers (tidemq,apache)")
    p.add_argument("--only", default="", help="comma-separated scenario key parts, e.g. sync-t64,e2e,drain")
    p.add_argument("--reps", type=int, help="repetitions (overrides the plan)")
    p.add_argument("--duration", type=float, help="measured seconds per run (overrides the plan)")
    p.add_argument("--backlog", type=int, help="backlog size for the drain (overrides the plan)")
    p.add_argument("--python-load", choices=("auto", "off"), default="auto", help="also drive with `tidemq bench`")
    p.add_argument("--work-dir", type=Path, default=RESULTS / "tmp", help="broker data (same filesystem for both)")
    p.add_argument("--keep-data", action="store_true", help="keep the brokers' data directories")
    p.add_argument("--no-doc", action="store_true", help="write the results JSON only")
    args = p.parse_args(argv)

    if args.report_only:
        stored: dict[str, Any] = json.loads(args.report_only.read_text())
        made = report.generate(stored, DOC, IMG)
        print(f"wrote {DOC} and {', '.join(str(m) for m in made)}", file=sys.stderr)
        return 0

    t_start = time.monotonic()
    plan = build_plan(args)
    brokers = tuple(b.strip() for b in args.brokers.split(",") if b.strip())
    run_id = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    work = args.work_dir / run_id
    work.mkdir(parents=True, exist_ok=True)
    harness.log(f"{plan.mode} run: {len(plan.scenarios)} scenarios x {plan.reps} rep(s), brokers {brokers}")

    harness.log("building the Java load and resolving Apache RocketMQ's jars (cached after the first time)")
    loads.ensure_built()
    if "apache" in brokers:
        server_classpath()
    py_load = loads.python_load_command() if args.python_load == "auto" else None
    harness.log(f"second load (tidemq bench): {' '.join(py_load) if py_load else 'not available'}")

    meta: dict[str, Any] = {
        "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": "python bench/run.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "plan": plan.describe(),
        "machine": machine(work),
        "versions": versions(),
        "queues": QUEUES,
        "load_jvm_args": list(loads.LOAD_JVM_ARGS),
        "python_load": " ".join(py_load[1:]) if py_load else None,
        "apache": {
            "broker_heap": APACHE_BROKER_HEAP,
            "namesrv_heap": APACHE_NAMESRV_HEAP,
            "jvm_flags": list(JVM_FLAGS),
            "broker_conf": {},
        },
    }
    res: dict[str, Any] = {"meta": meta}

    harness.log("raw limits: loopback round trips, loopback bulk, disk sequential write, fsyncs")
    t0 = time.monotonic()
    res["limits"] = limits.measure(work / "limits", quick=plan.mode == "quick")
    lim = res["limits"]
    harness.log(
        f"  loopback {lim['loopback_rtt'].get('round_trips_per_s')} round trips/s, "
        f"{lim['loopback_bulk'].get('mb_per_s')} MB/s; disk {lim['disk_write']['mb_per_s']} MB/s, "
        f"{lim['fsync']['fsyncs_per_s']} fsyncs/s ({time.monotonic() - t0:.1f}s)"
    )

    h = harness.Harness(
        plan,
        work,
        brokers=brokers,
        python_load=py_load,
        keep_data=args.keep_data,
        only=tuple(o for o in args.only.split(",") if o),
    )
    try:
        h.run()
        if plan.mode == "full":
            harness.log("raw limits again, at the end (each limit: the better of the two)")
            res["limits"] = limits.combine(res["limits"], limits.measure(work / "limits", quick=False))
        if args.profile:
            harness.log("profile: py-spy on tidemq under sync 64-thread sends")
            res["profile"] = h.profile(IMG / report.PROFILE_SVG)
            harness.log(f"  profile: {res['profile'].get('ok')} {res['profile'].get('stderr', '')[-300:]}")
    except KeyboardInterrupt:
        h.problems.append("interrupted (Ctrl-C): partial results")
        harness.log("interrupted: writing partial results")
    finally:
        if not args.keep_data:
            shutil.rmtree(work, ignore_errors=True)

    res.update(h.results())
    res["scenarios"] = [
        {k: getattr(s, k) for k in ("key", "section", "title", "kind", "flush", "size", "limit", "threads", "rate")}
        for s in plan.scenarios
    ]
    meta["apache"]["broker_conf"] = (h.settings.get("apache") or {}).get("broker_conf", {})
    clients = {r["result"].get("client_version") for r in h.runs if r["result"].get("client_version")}
    if clients:
        meta["versions"]["java_client"] = f"{loads.CLIENT_VERSION} ({', '.join(sorted(clients))})"
    meta["machine"]["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    meta["elapsed_s"] = round(time.monotonic() - t_start, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"{dt.date.today().isoformat()}-{socket.gethostname()}{'-quick' if plan.mode == 'quick' else ''}.json"
    out = RESULTS / name
    meta["results_file"] = str(out.relative_to(REPO))
    out.write_text(json.dumps(res, indent=1, sort_keys=False) + "\n")
    harness.log(f"results: {out} ({meta['elapsed_s'] / 60:.1f} min)")
    if not args.no_doc:
        made = report.generate(res, DOC, IMG)
        harness.log(f"wrote {DOC} and {len(made)} chart(s) in {IMG}")
    if h.problems:
        harness.log(f"{len(h.problems)} problem(s):\n  " + "\n  ".join(h.problems[:20]))
    return 1 if not h.runs else 0


if __name__ == "__main__":
    sys.exit(main())
