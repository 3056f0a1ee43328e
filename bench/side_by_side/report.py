# ruff: noqa: RUF001  (the generated document uses typographic signs: times, divide, minus, en dash)
"""Results JSON -> docs/benchmarks.md (between ``<!-- bench:begin -->`` and ``<!-- bench:end -->``) + PNG charts.

Can be re-run on a stored results file: ``python bench/run.py --report-only bench/results/<file>.json``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bench.side_by_side.plan import SECTIONS, SIZES

BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"
NAMES = {"tidemq": "tidemq", "apache": "Apache RocketMQ"}
COLORS = {"tidemq": "#1f77b4", "apache": "#d62728"}
PROFILE_SVG = "tidemq-produce-profile.svg"


# ---------------------------------------------------------------------------------------------------------------------
# Picking numbers out of the results


def runs(
    res: dict[str, Any], scenario: str, broker: str, load: str = "java", ok_only: bool = True
) -> list[dict[str, Any]]:
    out = []
    for r in res["runs"]:
        same = r["scenario"] == scenario and r["broker"] == broker and r["load"] == load
        if same and (r["result"].get("ok") or not ok_only):
            out.append(r["result"])
    return out


def values(rs: Iterable[dict[str, Any]], path: Sequence[str]) -> list[float]:
    out = []
    for r in rs:
        v: Any = r
        for p in path:
            v = v.get(p) if isinstance(v, dict) else None
        if isinstance(v, int | float) and not (isinstance(v, float) and math.isnan(v)):
            out.append(float(v))
    return out


class Stat:
    """Median and spread of a few runs."""

    def __init__(self, vals: Sequence[float]) -> None:
        self.vals = list(vals)

    @property
    def ok(self) -> bool:
        return bool(self.vals)

    @property
    def median(self) -> float:
        return statistics.median(self.vals) if self.vals else math.nan

    def fmt(self, f: str = "{:,.0f}") -> str:
        if not self.vals:
            return "—"
        text = f.format(self.median)
        if len(self.vals) > 1:
            text += f" <sub>({f.format(min(self.vals))}–{f.format(max(self.vals))})</sub>"
        return text


def ratio(a: Stat, b: Stat, *, higher_is_better: bool = True) -> str:
    if not (a.ok and b.ok) or b.median == 0:
        return "—"
    r = a.median / b.median
    better = r >= 1 if higher_is_better else r <= 1
    text = f"{r:.2f}×"
    return text if better else f"**{text}**"


def pct(a: Stat, limit: float | None) -> str:
    if not a.ok or not limit:
        return "—"
    return f"{100 * a.median / limit:.1f}%"


def limit_rate(res: dict[str, Any], kind: str, size: int) -> tuple[float | None, str]:
    lim = res.get("limits") or {}
    if kind in ("rtt", "rtt1"):
        v = (lim.get("loopback_rtt") or {}).get("round_trips_per_s")
        return v, f"{v:,.0f} round trips/s (loopback, 128 B ping-pong)" if v else "—"
    if kind == "rtt64":
        v = (lim.get("loopback_rtt64") or {}).get("round_trips_per_s")
        return v, f"{v:,.0f} round trips/s (loopback, 64 connections ping-pong)" if v else "—"
    if kind == "fsync":
        v = (lim.get("fsync") or {}).get("fsyncs_per_s")
        return v, f"{v:,.0f} fsyncs/s (one message per fsync; group commit can beat it)" if v else "—"
    mb = (lim.get("loopback_bulk") or {}).get("mb_per_s")
    if not mb:
        return None, "—"
    v = mb * 1e6 / size
    return v, f"{_si(v)} msgs/s ({mb:,.0f} MB/s loopback ÷ {size} B)"


def _si(v: float) -> str:
    return f"{v / 1e6:,.1f} M" if v >= 1e6 else f"{v:,.0f}"


def size_label(size: int) -> str:
    return SIZES.get(size, f"{size} B")


def scenario_list(res: dict[str, Any]) -> list[dict[str, Any]]:
    scen: list[dict[str, Any]] = res["scenarios"]
    return scen


# ---------------------------------------------------------------------------------------------------------------------
# Tables


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


LOAD_NAMES = {"java": "Java client", "python": "tidemq bench (Python)"}


def produce_table(res: dict[str, Any], section: str) -> list[str]:
    rows = []
    for s in scenario_list(res):
        if s["section"] != section:
            continue
        for load in ("java", "python"):
            t = runs(res, s["key"], "tidemq", load)
            a = runs(res, s["key"], "apache", load)
            if not (t or a or (load == "java" and runs(res, s["key"], "tidemq", load, ok_only=False))):
                continue
            ts, as_ = Stat(values(t, ["msgs_per_s"])), Stat(values(a, ["msgs_per_s"]))
            lim, lim_text = limit_rate(res, s["limit"], s["size"])
            tp, ap = Stat(values(t, ["latency_ms", "p99"])), Stat(values(a, ["latency_ms", "p99"]))
            rows.append(
                [
                    s["title"],
                    size_label(s["size"]),
                    LOAD_NAMES[load],
                    ts.fmt(),
                    as_.fmt(),
                    ratio(ts, as_),
                    lim_text,
                    pct(ts, lim),
                    pct(as_, lim),
                    f"{tp.fmt('{:,.2f}')} / {ap.fmt('{:,.2f}')}",
                    cpu_cell(t, a),
                ]
            )
    head = [
        "case",
        "body",
        "load",
        "tidemq msgs/s",
        "Apache msgs/s",
        "tidemq ÷ Apache",
        "raw limit",
        "tidemq ÷ limit",
        "Apache ÷ limit",
        "p99 send ms (tidemq / Apache)",
        CPU_HEAD,
    ]
    return _table(head, rows) if rows else ["_No runs._"]


def drain_table(res: dict[str, Any]) -> list[str]:
    rows = []
    for size in sorted({int(s["size"]) for s in res["lifecycle_sizes"]} if "lifecycle_sizes" in res else []):
        key = f"drain-{'4k' if size == 4096 else size}"
        for load in ("java", "python"):
            t, a = runs(res, key, "tidemq", load), runs(res, key, "apache", load)
            if not (t or a):
                continue
            ts, as_ = Stat(values(t, ["msgs_per_s"])), Stat(values(a, ["msgs_per_s"]))
            lim, lim_text = limit_rate(res, "bulk", size)
            n = max(values(t + a, ["received"]) or [0])
            rows.append(
                [
                    f"{n:,.0f} messages",
                    size_label(size),
                    LOAD_NAMES[load],
                    ts.fmt(),
                    as_.fmt(),
                    ratio(ts, as_),
                    lim_text,
                    pct(ts, lim),
                    pct(as_, lim),
                    f"{Stat(values(t, ['time_to_first_s'])).fmt('{:.2f}')} / "
                    f"{Stat(values(a, ['time_to_first_s'])).fmt('{:.2f}')}",
                    cpu_cell(t, a),
                ]
            )
    head = [
        "backlog",
        "body",
        "load",
        "tidemq msgs/s",
        "Apache msgs/s",
        "tidemq ÷ Apache",
        "raw limit",
        "tidemq ÷ limit",
        "Apache ÷ limit",
        "first message after s (tidemq / Apache)",
        CPU_HEAD,
    ]
    return _table(head, rows) if rows else ["_No runs._"]


def e2e_table(res: dict[str, Any]) -> list[str]:
    rows = []
    rtt_p50 = ((res.get("limits") or {}).get("loopback_rtt") or {}).get("latency_ms", {}).get("p50")
    for s in scenario_list(res):
        if s["section"] != "5":
            continue
        for load in ("java", "python"):
            t, a = runs(res, s["key"], "tidemq", load), runs(res, s["key"], "apache", load)
            if not (t or a):
                continue
            cells = [s["title"], size_label(s["size"]), LOAD_NAMES[load]]
            for q in ("p50", "p99", "p999"):
                ts, as_ = Stat(values(t, ["latency_ms", q])), Stat(values(a, ["latency_ms", q]))
                cells.append(f"{ts.fmt('{:,.2f}')} / {as_.fmt('{:,.2f}')} ({ratio(ts, as_, higher_is_better=False)})")
            ta, aa = Stat(values(t, ["achieved_rate"])), Stat(values(a, ["achieved_rate"]))
            cells.append(f"{ta.fmt()} / {aa.fmt()}")
            lost = f"{sum(values(t, ['lost'])):,.0f} / {sum(values(a, ['lost'])):,.0f}"
            cells.append(lost)
            cells.append(f"{rtt_p50:.3f} ms" if rtt_p50 else "—")
            cells.append(cpu_cell(t, a))
            rows.append(cells)
    head = [
        "rate",
        "body",
        "load",
        "p50 ms tidemq / Apache (ratio)",
        "p99 ms",
        "p99.9 ms",
        "achieved msgs/s",
        "lost",
        "raw limit: loopback RTT p50",
        CPU_HEAD,
    ]
    return _table(head, rows) if rows else ["_No runs._"]


CPU_HEAD = "broker CPU µs/msg (tidemq / Apache)"


def cpu_cell(t: list[dict[str, Any]], a: list[dict[str, Any]]) -> str:
    """Broker CPU time per message over the whole run (warm-up included): a figure that other work on a shared
    machine disturbs less than a rate."""
    ts, as_ = Stat(values(t, ["broker_cpu_us_per_msg"])), Stat(values(a, ["broker_cpu_us_per_msg"]))
    if not (ts.ok or as_.ok):
        return "—"
    return f"{ts.fmt('{:,.0f}')} / {as_.fmt('{:,.0f}')} ({ratio(ts, as_, higher_is_better=False)})"


def _mib(v: float) -> str:
    return f"{v / (1 << 20):,.0f}"


def lifecycle_table(res: dict[str, Any]) -> list[str]:
    life = res.get("lifecycle") or {}
    t, a = life.get("tidemq", {}), life.get("apache", {})
    rows = []
    ts, as_ = Stat(t.get("cold_start_s", [])), Stat(a.get("cold_start_s", []))
    rows.append(["cold start: spawn → first message accepted (s)", ts.fmt("{:.2f}"), as_.fmt("{:.2f}"),
                 ratio(ts, as_, higher_is_better=False), "—"])  # fmt: skip
    ts, as_ = Stat(t.get("ready_s", [])), Stat(a.get("ready_s", []))
    rows.append(["spawn → ready (s)", ts.fmt("{:.2f}"), as_.fmt("{:.2f}"), ratio(ts, as_, higher_is_better=False), "—"])
    for field, what in (("rss", "RSS"), ("anon", "RSS, anonymous only")):
        ts = Stat([x[field] for x in t.get("rss_idle", [])])
        as_ = Stat([x[field] for x in a.get("rss_idle", [])])
        rows.append([f"{what}, idle (MiB)", _fmt_mib(ts), _fmt_mib(as_), ratio(ts, as_, higher_is_better=False), "—"])
    for size in sorted({x["size"] for x in t.get("rss_backlog", []) + a.get("rss_backlog", [])}):
        for field, what in (("rss", "RSS"), ("anon", "RSS, anonymous only")):
            ts = Stat([x[field] for x in t.get("rss_backlog", []) if x["size"] == size])
            as_ = Stat([x[field] for x in a.get("rss_backlog", []) if x["size"] == size])
            n = max([x["messages"] for x in t.get("rss_backlog", []) + a.get("rss_backlog", []) if x["size"] == size])
            rows.append([f"{what}, with a {n:,} × {size_label(size)} backlog (MiB)", _fmt_mib(ts), _fmt_mib(as_),
                         ratio(ts, as_, higher_is_better=False), "—"])  # fmt: skip
    inline = ((res.get("meta") or {}).get("plan") or {}).get("backlog_inline")
    whole = " (the whole store: in quick mode with the other scenarios' topics)" if inline else ""
    for size in sorted({x["size"] for x in t.get("disk", []) + a.get("disk", [])}):
        for field, what, lim in (
            ("allocated_per_msg", f"on disk per stored message: the store's allocated blocks{whole} ÷ messages", size),
            ("record_bytes", "… of which the stored record (commit-log bytes per message)", f"{size} (the body)"),
            ("growth_per_msg", "… allocated during the fill ÷ messages (preallocated files were counted before)", "—"),
        ):
            ts, as_ = _disk(t, size, field), _disk(a, size, field)
            r = ratio(ts, as_, higher_is_better=False) if field != "growth_per_msg" else "— (preallocation)"
            rows.append(
                [f"{what}, {size_label(size)} bodies (bytes)", ts.fmt("{:,.0f}"), as_.fmt("{:,.0f}"), r, str(lim)]
            )
    for size in sorted({x["size"] for x in t.get("fill", []) + a.get("fill", [])}):
        ts = Stat([x["msgs_per_s"] for x in t.get("fill", []) if x["size"] == size and x.get("msgs_per_s")])
        as_ = Stat([x["msgs_per_s"] for x in a.get("fill", []) if x["size"] == size and x.get("msgs_per_s")])
        rows.append([f"backlog fill rate, {size_label(size)}, batches of 32, 8 threads (msgs/s)", ts.fmt(),
                     as_.fmt(), ratio(ts, as_), limit_rate(res, "bulk", size)[1]])  # fmt: skip
    return _table(["measure", "tidemq", "Apache RocketMQ", "tidemq ÷ Apache", "raw limit"], rows)


def _fmt_mib(s: Stat) -> str:
    if not s.ok:
        return "—"
    return Stat([v / (1 << 20) for v in s.vals]).fmt("{:,.0f}")


def limits_table(res: dict[str, Any]) -> list[str]:
    lim = res.get("limits") or {}
    rtt, bulk = lim.get("loopback_rtt") or {}, lim.get("loopback_bulk") or {}
    rtt64 = lim.get("loopback_rtt64") or {}
    disk, fs = lim.get("disk_write") or {}, lim.get("fsync") or {}
    rows = [
        ["loopback round trips/s (one connection, 128 B ping-pong, Java)", f"{rtt.get('round_trips_per_s', 0):,.0f}",
         f"p50 {rtt.get('latency_ms', {}).get('p50', '—')} ms, p99 {rtt.get('latency_ms', {}).get('p99', '—')} ms"
         + _samples(rtt)],
        ["loopback round trips/s (64 connections at once, 128 B ping-pong, Java)",
         f"{rtt64.get('round_trips_per_s', 0):,.0f}",
         f"p50 {rtt64.get('latency_ms', {}).get('p50', '—')} ms, p99 {rtt64.get('latency_ms', {}).get('p99', '—')} ms"
         + _samples(rtt64)],
        ["loopback bulk MB/s (one connection, 256 KiB writes, Java)", f"{bulk.get('mb_per_s', 0):,.0f}",
         _samples(bulk).lstrip("; ")],
        ["disk sequential write MB/s (1 MiB writes + fsync, data directory)", f"{disk.get('mb_per_s', 0):,.0f}",
         f"{disk.get('bytes', 0) >> 20} MiB" + _samples(disk)],
        ["fsyncs/s (4 KiB append + fdatasync, data directory)", f"{fs.get('fsyncs_per_s', 0):,.0f}",
         _samples(fs).lstrip("; ")],
    ]  # fmt: skip
    return _table(["limit", "value", "note"], rows)


def _samples(m: dict[str, Any]) -> str:
    s = m.get("samples")
    if not s:
        return ""
    return "; the better of " + " (start) and ".join(f"{v:,.0f}" if v else "—" for v in s) + " (end)"


# ---------------------------------------------------------------------------------------------------------------------
# Where tidemq loses


EVEN = 0.05  # within 5 %: about even (one run on a shared machine cannot tell that apart)


def losses(res: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """(where tidemq loses, where it is about even, where it wins): plain sentences."""
    lose: list[str] = []
    even: list[str] = []
    win: list[str] = []

    def judge(what: str, t: Stat, a: Stat, unit: str, higher_is_better: bool, f: str = "{:,.0f}") -> None:
        if not (t.ok and a.ok) or a.median == 0 or t.median == 0:
            return
        r = t.median / a.median
        worse = r < 1 if higher_is_better else r > 1
        factor = (1 / r) if (worse == higher_is_better) else r
        text = f"{what}: tidemq {f.format(t.median)} vs Apache {f.format(a.median)} {unit}"
        if abs(r - 1) < EVEN:
            even.append(f"{text}.")
        elif worse:
            lose.append(f"{text} — tidemq is {factor:.1f}× {'slower' if higher_is_better else 'worse'}.")
        else:
            win.append(f"{text} ({factor:.1f}×).")

    for s in scenario_list(res):
        for load in ("java", "python"):
            t, a = runs(res, s["key"], "tidemq", load), runs(res, s["key"], "apache", load)
            name = f"{SECTIONS[s['section']]}: {s['title']}, {size_label(s['size'])}"
            if load == "python":
                name += " (Python load)"
            if load == "java":
                judge(f"{name}, broker CPU per message", Stat(values(t, ["broker_cpu_us_per_msg"])),
                      Stat(values(a, ["broker_cpu_us_per_msg"])), "µs", False)  # fmt: skip
            if s["kind"] == "produce":
                judge(name, Stat(values(t, ["msgs_per_s"])), Stat(values(a, ["msgs_per_s"])), "msgs/s", True)
            else:
                judge(f"{name}, p99", Stat(values(t, ["latency_ms", "p99"])), Stat(values(a, ["latency_ms", "p99"])),
                      "ms", False, "{:,.2f}")  # fmt: skip
    for key in sorted({r["scenario"] for r in res["runs"] if r["scenario"].startswith("drain-")}):
        for load in ("java", "python"):
            t, a = runs(res, key, "tidemq", load), runs(res, key, "apache", load)
            name = f"backlog drain, {key.removeprefix('drain-').replace('4k', '4 KiB').replace('128', '128 B')}"
            judge(name + (" (Python load)" if load == "python" else ""), Stat(values(t, ["msgs_per_s"])),
                  Stat(values(a, ["msgs_per_s"])), "msgs/s", True)  # fmt: skip
    life = res.get("lifecycle") or {}
    t, a = life.get("tidemq", {}), life.get("apache", {})
    judge("cold start", Stat(t.get("cold_start_s", [])), Stat(a.get("cold_start_s", [])), "s", False, "{:.2f}")
    judge("idle RSS", Stat([x["rss"] / 2**20 for x in t.get("rss_idle", [])]),
          Stat([x["rss"] / 2**20 for x in a.get("rss_idle", [])]), "MiB", False)  # fmt: skip
    for size in sorted({x["size"] for x in t.get("rss_backlog", [])}):
        judge(f"RSS with the {size_label(size)} backlog",
              Stat([x["rss"] / 2**20 for x in t.get("rss_backlog", []) if x["size"] == size]),
              Stat([x["rss"] / 2**20 for x in a.get("rss_backlog", []) if x["size"] == size]),
              "MiB", False)  # fmt: skip
    for size in sorted({x["size"] for x in t.get("disk", [])}):
        judge(f"disk bytes per {size_label(size)} message",
              _disk(t, size, "allocated_per_msg"), _disk(a, size, "allocated_per_msg"), "bytes", False)  # fmt: skip
    return lose, even, win


def _disk(life: dict[str, Any], size: int, field: str) -> Stat:
    return Stat([x[field] for x in life.get("disk", []) if x["size"] == size and x.get(field) is not None])


# ---------------------------------------------------------------------------------------------------------------------
# Charts


def charts(res: dict[str, Any], img_dir: Path) -> list[tuple[str, str]]:
    """Writes the PNGs; returns (file name, caption) pairs (none without matplotlib: the doc says so)."""
    try:
        import matplotlib
    except ImportError:
        return []

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img_dir.mkdir(parents=True, exist_ok=True)
    made: list[tuple[str, str]] = []

    # Throughput bars
    sizes = sorted({int(s["size"]) for s in scenario_list(res)} | {128})
    groups: list[tuple[int, list[tuple[str, str]]]] = []
    for size in sizes:
        items = [
            (s["key"], _short(s))
            for s in scenario_list(res)
            if s["kind"] == "produce" and s["size"] == size and any(runs(res, s["key"], b) for b in NAMES)
        ]
        drain = f"drain-{'4k' if size == 4096 else size}"
        if any(r["scenario"] == drain for r in res["runs"]):
            items.append((drain, "drain"))
        if items:
            groups.append((size, items))
    if groups:
        fig, axes = plt.subplots(1, len(groups), figsize=(6.5 * len(groups), 4.8), squeeze=False)
        for ax, (size, items) in zip(axes[0], groups, strict=True):
            xs = range(len(items))
            for j, broker in enumerate(("tidemq", "apache")):
                meds, lo, hi = [], [], []
                for key, _label in items:
                    st = Stat(values(runs(res, key, broker), ["msgs_per_s"]))
                    m = st.median if st.ok else 0.0
                    meds.append(m)
                    lo.append(m - min(st.vals) if st.ok else 0.0)
                    hi.append(max(st.vals) - m if st.ok else 0.0)
                pos = [x + (j - 0.5) * 0.4 for x in xs]
                ax.bar(pos, meds, 0.4, yerr=[lo, hi], capsize=3, label=NAMES[broker], color=COLORS[broker])
            for x, (key, _label) in zip(xs, items, strict=True):
                t = Stat(values(runs(res, key, "tidemq"), ["msgs_per_s"]))
                a = Stat(values(runs(res, key, "apache"), ["msgs_per_s"]))
                if t.ok and a.ok and a.median:
                    top = max(t.median, a.median)
                    ax.annotate(f"{t.median / a.median:.2f}×", (x, top), ha="center", va="bottom", fontsize=8)
            ax.set_xticks(list(xs))
            ax.set_xticklabels([label for _k, label in items], rotation=30, ha="right", fontsize=8)
            ax.set_yscale("log")
            ax.set_ylabel("messages/s (log scale)")
            ax.set_title(f"Throughput, {size_label(size)} bodies (Java client)")
            ax.grid(axis="y", alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(img_dir / "bench-throughput.png", dpi=110)
        plt.close(fig)
        made.append(("bench-throughput.png", "Throughput per scenario, median with min–max (labels: tidemq ÷ Apache)"))

    # Latency CDFs: end-to-end, and sync sends
    for prefix, kinds, fname, caption in (
        ("e2e", ("5",), "bench-e2e-latency-cdf.png", "End-to-end latency CDFs (receive time − scheduled send time)"),
        ("sync", ("1", "6"), "bench-send-latency-cdf.png", "Sync send latency CDFs (one request, client-side)"),
    ):
        scen = [s for s in scenario_list(res) if s["section"] in kinds]
        scen = [s for s in scen if any(runs(res, s["key"], b) for b in ("tidemq", "apache"))]
        if not scen:
            continue
        cols = min(4, len(scen))
        rows_n = math.ceil(len(scen) / cols)
        fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 3.6 * rows_n), squeeze=False)
        for ax in axes.flat[len(scen) :]:
            ax.axis("off")
        for ax, s in zip(axes.flat, scen, strict=False):
            for broker in ("tidemq", "apache"):
                rs = runs(res, s["key"], broker)
                if not rs:
                    continue
                rs.sort(key=lambda r: (r.get("latency_ms") or {}).get("p99") or 0)
                cdf = rs[len(rs) // 2].get("cdf") or []
                pts = [(ms, q) for q, ms in cdf if ms is not None and ms > 0 and q < 1]
                if pts:
                    ax.plot([p[0] for p in pts], [-math.log10(1 - p[1]) for p in pts], marker=".",
                            label=NAMES[broker], color=COLORS[broker])  # fmt: skip
            ax.set_xscale("log")
            ax.set_yticks([0, 1, 2, 3, 4])
            ax.set_yticklabels(["0", "90", "99", "99.9", "99.99"])
            ax.set_xlabel("latency, ms (log)")
            ax.set_ylabel("percentile")
            ax.set_title(f"{s['title']}, {size_label(s['size'])}", fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(img_dir / fname, dpi=110)
        plt.close(fig)
        made.append((fname, caption + "; the run with the median p99"))
        del prefix
    return made


def _short(s: dict[str, Any]) -> str:
    title = str(s["title"])
    return (
        title.replace("sync batches of 32, 16 threads", "batch 32 ×16t")
        .replace("async, 4 threads, 1024 in flight", "async")
        .replace("SYNC_FLUSH, sync, 64 threads", "SYNC_FLUSH 64t")
        .replace("sync, ", "sync ")
        .replace(" threads", "t")
        .replace(" thread", "t")
    )


# ---------------------------------------------------------------------------------------------------------------------
# The document


def render(
    res: dict[str, Any], images: list[tuple[str, str]], img_rel: str, has_profile: bool, has_old_profile: bool = False
) -> str:
    meta = res["meta"]
    plan = meta["plan"]
    reps = plan["reps"]
    lines = [
        BEGIN,
        "<!-- Generated by bench/run.py from the results file named below; edits between these markers are lost. -->",
        "",
        "## Side by side with Apache RocketMQ",
        "",
        f"Run of {meta['started']} on `{meta['machine']['host']}` — **{plan['mode']} mode**, "
        + (
            "**1 run per figure (no medians, no spread: noisy)**"
            if reps == 1
            else f"median of {reps} runs per figure, spread (min–max) in small print"
        )
        + f"; results: `{meta['results_file']}`; took {meta['elapsed_s'] / 60:.1f} min.",
        "",
        "Both brokers run alone, one after the other, on the same machine and filesystem, with the same settings "
        f"(flush policy, {meta['queues']} queues per topic created up front, auto-create on) and are driven by the "
        "same load: the official Java client (`org.apache.rocketmq:rocketmq-client` "
        f"{meta['versions'].get('java_client', '?')}, remoting protocol) in `bench/java`. Ratios are tidemq ÷ Apache; "
        "**bold** marks where tidemq does worse. Each figure also stands against a raw limit of this machine, "
        "measured in the same run. The load generator shares the machine's cores with the broker under test "
        "(no pinning), the same handicap for both — but the Java client is itself CPU-hungry, so on a small machine "
        "a broker that uses several cores (Apache) loses more to it than a mostly single-threaded one (tidemq); "
        "the Python load, which is lighter, shows the other side. The *broker CPU µs/msg* columns (CPU time of the "
        "broker's processes during a run ÷ the messages of the run, warm-up included) are less disturbed by other "
        "work on a shared machine than rates are.",
        "",
        "### How it was run",
        "",
        f"- Command: `{meta['command']}`",
        f"- Machine: {meta['machine']['cpu']}, {meta['machine']['cores']} cores, "
        f"{meta['machine']['mem_gib']:.0f} GiB RAM, {meta['machine']['kernel']}; data directory on "
        f"`{meta['machine']['filesystem']}`; load average {meta['machine']['loadavg_start']} at the start and "
        f"{meta['machine'].get('loadavg_end', '?')} at the end (a shared machine: other work ran too).",
        f"- tidemq {meta['versions']['tidemq']} (commit {meta['versions']['git']}), Python "
        f"{meta['versions']['python']}, uvloop {meta['versions']['uvloop']}: "
        f"`{(res.get('broker_settings') or {}).get('tidemq', {}).get('command', 'tidemq dev')}`; broker.conf "
        f"`{_conf((res.get('broker_settings') or {}).get('tidemq', {}).get('broker_conf', {}))}`.",
        f"- Apache RocketMQ {meta['versions']['apache']} from Maven Central's jars, name server and broker JVMs "
        f"(`{meta['versions']['java']}`), broker heap {meta['apache']['broker_heap']}, name server heap "
        f"{meta['apache']['namesrv_heap']}, flags `{' '.join(meta['apache']['jvm_flags'])}`; broker.conf "
        f"`{_conf(meta['apache']['broker_conf'])}`.",
        f"- Load: `java {' '.join(meta['load_jvm_args'])} -cp bench/java/... tidemq.bench.Bench serve`, one load JVM "
        "per broker start, fed one run per line (the exact arguments of every run are in the results file), so the "
        f"client's JIT is warm: every fresh broker first takes an untimed {plan.get('broker_warmup_s', '?')} s of "
        "sync sends (16 threads) and their drain through it. Then per run a warm-up of "
        f"{plan['warmup_s']} s, then "
        f"{plan['duration_s']} s measured for produce runs, {plan['e2e_warmup_s']} s + {plan['e2e_duration_s']} s "
        "for end-to-end runs. A new `Message` per send sharing one body, body compression off, client defaults "
        "otherwise (retries 2, 3 s timeout)."
        + (
            f" Second load: tidemq's own Python load generator (`{meta['python_load']}`), no warm-up."
            if meta.get("python_load")
            else " tidemq's own Python load generator (`tidemq bench`) was not available for this run."
        ),
        "",
        "### Raw limits (same run)",
        "",
        *limits_table(res),
        "",
    ]
    for section in ("1", "2", "3"):
        lines += [f"### {section}. {SECTIONS[section]}", "", *produce_table(res, section), ""]
    lines += [
        f"### 4. {SECTIONS['4']}",
        "",
        (
            "On the broker that ran the ASYNC_FLUSH scenarios (quick mode)"
            if plan.get("backlog_inline")
            else "On a fresh broker per body size"
        )
        + "; the backlog is filled with batched sends, then drained by a push consumer of a "
        "new group (from the first offset, 20 consume threads, pull batch 32), "
        f"{plan['drain_reps']} time(s) with a new group each. The rate is messages ÷ (last arrival − first arrival).",
        "",
        *drain_table(res),
        "",
        f"### 5. {SECTIONS['5']}",
        "",
        "Async sends scheduled at a fixed rate (2 scheduler threads, at most 4,096 in flight); a push consumer in the "
        "same JVM; latency = receive time − *scheduled* send time, both from the message body (a producer or broker "
        "that falls behind shows up as latency: no coordinated omission). Ratios below 1 are better for tidemq here.",
        "",
        *e2e_table(res),
        "",
        f"### 6. {SECTIONS['6']}",
        "",
        *produce_table(res, "6"),
        "",
        f"### 7. {SECTIONS['7']}",
        "",
        "Not yet: tidemq has no replication yet. The harness will start a master and a slave of each broker.",
        "",
        f"### 8. {SECTIONS['8']}",
        "",
        "Not yet: tidemq has no gRPC endpoint yet (Apache's is its proxy).",
        "",
        f"### 9. {SECTIONS['9']}",
        "",
        "Cold start counts from spawning the process(es) — for Apache the name server JVM, then the broker JVM once "
        "the name server is up, as its scripts do — to the first SEND_MESSAGE answered SEND_OK. RSS is summed over "
        "the processes (Apache: name server + broker JVMs; tidemq: the one `tidemq dev` process), read from "
        "/proc; file-backed pages of mapped store files count in RSS, so the anonymous part is shown too. On-disk "
        "bytes per message are the store's allocated blocks (`du`) after the backlog fill ÷ the backlog's "
        "messages: blocks a broker reserves ahead of its writes count whole, which weighs most on small backlogs "
        "(tidemq reserves 16 MiB of commit log, 256 KiB per consume queue and 4 MiB of index entries at a time; "
        "runs recorded before 2026-11-26 reserved whole 1 GiB segments and 420 MB index files; Apache's files "
        "are sparse). The stored record size comes from the commit-log offsets in the send results.",
        "",
        *lifecycle_table(res),
        "",
    ]
    lose, even, win = losses(res)
    lines += ["### Where tidemq loses", ""]
    lines += [f"- {x}" for x in lose] or ["- Nowhere in this run."]
    lines += ["", f"About even (within {EVEN:.0%}):", ""] + ([f"- {x}" for x in even] or ["- Nothing."])
    lines += ["", "Where tidemq wins:", ""] + ([f"- {x}" for x in win] or ["- Nowhere in this run."])
    lines += ["", "### Charts", ""]
    if not images:
        lines += ["_No charts: matplotlib is not installed (`pip install -e '.[bench]'`)._", ""]
    for name, caption in images:
        lines += [f"![{caption}]({img_rel}/{name})", "", f"_{caption}._", ""]
    lines += ["### Profile: where tidemq spends its time", ""]
    if has_profile:
        prof = res.get("profile") or {}
        lines += [
            f"py-spy flame graph of the `tidemq dev` process during sync sends (64 threads, 128 B): "
            f"[{PROFILE_SVG}]({img_rel}/{PROFILE_SVG}) (open it in a browser; the load ran at "
            f"{(prof.get('load') or {}).get('msgs_per_s', '?')} msgs/s while sampled). Recorded with "
            f"`{prof.get('command', 'py-spy record')}`.",
        ]
    else:
        if has_old_profile:
            lines += [
                f"An earlier run's flame graph (not from this run) is at [{PROFILE_SVG}]({img_rel}/{PROFILE_SVG}).",
                "",
            ]
        lines += [
            "Not recorded in this run. `python bench/run.py --quick --profile` records one with py-spy "
            f"(`py-spy record -o {PROFILE_SVG} --pid <tidemq pid> --duration 10`, needs root or ptrace rights) "
            f"during a sync 64-thread produce run into `{img_rel}/{PROFILE_SVG}`.",
        ]
    problems = res.get("problems") or []
    if problems:
        lines += ["", "### Problems in this run", ""] + [f"- {p}" for p in problems[:40]]
    lines += ["", END]
    return "\n".join(lines) + "\n"


def _conf(conf: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in conf.items())


def write_doc(doc: Path, section: str) -> None:
    """Replace the text between the markers, or append the section; never touch what is outside them."""
    if doc.is_file():
        text = doc.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            _old, tail = rest.split(END, 1)
            new = head + section.rstrip("\n") + tail
        else:
            new = text.rstrip("\n") + "\n\n" + section
    else:
        new = (
            "# Benchmarks\n\n"
            "How fast tidemq is, measured against Apache RocketMQ itself on the same machine with the same load.\n"
            "The part between the `bench:` markers is generated by `bench/run.py` (`make bench`, `make bench-quick`); "
            "write anything else (store-level benchmarks, notes) outside them.\n\n" + section
        )
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(new)


def generate(res: dict[str, Any], doc: Path, img_dir: Path) -> list[Path]:
    res.setdefault("lifecycle_sizes", [{"size": s} for s in res["meta"]["plan"]["backlog_sizes"]])
    images = charts(res, img_dir)
    rel = Path(*([".."] * 0)) / img_dir.relative_to(doc.parent) if img_dir.is_relative_to(doc.parent) else img_dir
    has_profile = (img_dir / PROFILE_SVG).is_file() and bool((res.get("profile") or {}).get("ok"))
    old = (img_dir / PROFILE_SVG).is_file() and not has_profile
    write_doc(doc, render(res, images, str(rel), has_profile, old))
    return [img_dir / n for n, _c in images]
