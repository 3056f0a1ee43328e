"""What a run measures: the scenarios of issue 5, and the quick and full plans built from them."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

SIZES = {128: "128 B", 4096: "4 KiB"}


@dataclass(frozen=True)
class Scenario:
    """One load against one broker configuration; the same for both brokers."""

    key: str
    section: str  # "1".."6": the numbering; drives the doc's grouping
    title: str
    kind: str  # "produce" | "e2e"
    flush: str  # ASYNC_FLUSH | SYNC_FLUSH
    size: int
    java_args: tuple[str, ...] = ()
    py_args: tuple[str, ...] | None = None  # the Python load's equivalent; None: not run with it
    limit: str = "bulk"  # "rtt1" | "rtt64" | "bulk" | "fsync": the raw limit this figure is set against
    threads: int = 1
    rate: int = 0


SECTIONS = {
    "1": "Sync single sends",
    "2": "Async sends",
    "3": "Batched sends (32 per batch)",
    "4": "Drain of a backlog by a push consumer",
    "5": "End-to-end latency at a fixed rate",
    "6": "SYNC_FLUSH sync sends",
    "7": "SYNC_MASTER with a slave",
    "8": "gRPC (proxy) clients",
    "9": "Cold start, memory, disk",
}


def _size_tag(size: int) -> str:
    return "4k" if size == 4096 else str(size)


def produce_scenarios(sizes: tuple[int, ...], thread_counts: tuple[int, ...]) -> list[Scenario]:
    out: list[Scenario] = []
    for size in sizes:
        tag = _size_tag(size)
        for t in thread_counts:
            out.append(
                Scenario(
                    f"sync-t{t}-{tag}",
                    "1",
                    f"sync, {t} thread{'s' if t > 1 else ''}",
                    "produce",
                    "ASYNC_FLUSH",
                    size,
                    ("--mode", "sync", "--threads", str(t), "--size", str(size)),
                    ("--mode", "sync", "--concurrency", str(t), "--size", str(size)) if t == 64 else None,
                    "rtt1" if t == 1 else "rtt64",
                    threads=t,
                )
            )
        out.append(
            Scenario(
                f"async-{tag}",
                "2",
                "async, 4 threads, 1024 in flight",
                "produce",
                "ASYNC_FLUSH",
                size,
                ("--mode", "async", "--threads", "4", "--inflight", "1024", "--size", str(size)),
                limit="rtt64",
                threads=4,
            )
        )
        out.append(
            Scenario(
                f"batch-{tag}",
                "3",
                "sync batches of 32, 16 threads",
                "produce",
                "ASYNC_FLUSH",
                size,
                ("--mode", "sync", "--batch", "32", "--threads", "16", "--size", str(size)),
                ("--mode", "sync", "--batch", "32", "--concurrency", "16", "--size", str(size)),
                threads=16,
            )
        )
    return out


def e2e_scenarios(sizes: tuple[int, ...], rates: tuple[int, ...]) -> list[Scenario]:
    out: list[Scenario] = []
    for size in sizes:
        for rate in rates:
            out.append(
                Scenario(
                    f"e2e-{rate}-{_size_tag(size)}",
                    "5",
                    f"{rate:,} msgs/s",
                    "e2e",
                    "ASYNC_FLUSH",
                    size,
                    ("--rate", str(rate), "--size", str(size), "--threads", "2", "--inflight", "4096"),
                    ("--rate", str(rate), "--size", str(size), "--concurrency", "16") if rate == 1000 else None,
                    "rtt1",
                    threads=2,
                    rate=rate,
                )
            )
    return out


def sync_flush_scenarios(sizes: tuple[int, ...]) -> list[Scenario]:
    return [
        Scenario(
            f"syncflush-t64-{_size_tag(size)}",
            "6",
            "SYNC_FLUSH, sync, 64 threads",
            "produce",
            "SYNC_FLUSH",
            size,
            ("--mode", "sync", "--threads", "64", "--size", str(size)),
            limit="fsync",
            threads=64,
        )
        for size in sizes
    ]


@dataclass
class Plan:
    mode: str  # "quick" | "full"
    reps: int
    warmup_s: float
    duration_s: float
    e2e_warmup_s: float
    e2e_duration_s: float
    backlog: int
    backlog_sizes: tuple[int, ...]
    drain_reps: int
    scenarios: list[Scenario] = field(default_factory=list)
    broker_warmup_s: float = 5.0  # untimed load on every fresh broker (JIT, page cache) before anything is measured
    # quick: fill and drain the backlog on the broker that ran the ASYNC_FLUSH scenarios (saves two broker starts);
    # full: on a fresh broker per body size, so memory with the backlog is the backlog's alone
    backlog_inline: bool = False

    def describe(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "reps": self.reps,
            "warmup_s": self.warmup_s,
            "duration_s": self.duration_s,
            "e2e_warmup_s": self.e2e_warmup_s,
            "e2e_duration_s": self.e2e_duration_s,
            "backlog": self.backlog,
            "backlog_sizes": list(self.backlog_sizes),
            "drain_reps": self.drain_reps,
            "broker_warmup_s": self.broker_warmup_s,
            "backlog_inline": self.backlog_inline,
            "scenarios": [s.key for s in self.scenarios],
        }


def quick_plan() -> Plan:
    sizes = (128,)
    scenarios = [
        *produce_scenarios(sizes, (1, 64)),
        *e2e_scenarios(sizes, (1000,)),
        *sync_flush_scenarios(sizes),
    ]
    # the Python load only where it says most: sync sends with 64 senders and end-to-end latency
    scenarios = [replace(s, py_args=None) if s.section == "3" else s for s in scenarios]
    return Plan("quick", 1, 1.0, 4.0, 2.0, 5.0, 100_000, (128,), 1, scenarios, backlog_inline=True)


def full_plan() -> Plan:
    sizes = (128, 4096)
    scenarios = [
        *produce_scenarios(sizes, (1, 16, 64)),
        *e2e_scenarios(sizes, (1000, 10000)),
        *sync_flush_scenarios(sizes),
    ]
    # the Python load on 128 B bodies only (its figures say the same at 4 KiB, and the budget is 30 minutes)
    scenarios = [replace(s, py_args=None) if s.size != 128 else s for s in scenarios]
    return Plan("full", 3, 2.0, 5.0, 2.0, 6.0, 1_000_000, (128, 4096), 3, scenarios, broker_warmup_s=6.0)
