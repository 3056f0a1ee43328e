"""``tidemq bench produce|consume|e2e`` end to end against a real ``tidemq dev`` subprocess.

The command runs in this process (its own uvloop loop; the test functions are synchronous) with a parser that
holds only the bench sub-command, exactly as ``tidemq.cli.main`` registers it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server_process import ServerProcess, start_server
from tidemq.cli import bench_command

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = start_server(tmp_path_factory.mktemp("bench") / "data")
    try:
        yield process
    finally:
        process.stop()


def bench(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any], str]:
    """Run ``tidemq bench ...``; (exit code, JSON report from stdout or {}, stderr)."""
    parser = argparse.ArgumentParser(prog="tidemq")
    bench_command.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *argv])
    code = args.handler(args)
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else {}), err


def test_produce_then_consume_counts_match(
    server: ServerProcess, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ns = server.namesrv_addr
    out_file = tmp_path / "produce.json"
    code, report, err = bench(
        capsys, "produce", "--namesrv", ns, "--topic", "BenchA", "--count", "2000", "--concurrency", "16",
        "--json", str(out_file),
    )  # fmt: skip
    assert code == 0, err
    assert report == json.loads(out_file.read_text())
    assert (report["count"], report["errors"]) == (2000, 0)
    assert report["msgs_per_s"] > 0
    assert report["mb_per_s"] == pytest.approx(2000 * 128 / 1e6 / report["seconds"], rel=0.01)
    assert set(report["latency_ms"]) == {"p50", "p90", "p99", "p999", "max", "mean"}
    assert report["latency_ms"]["p50"] <= report["latency_ms"]["p99"] <= report["latency_ms"]["max"]
    assert "produce: 2,000 msgs" in err
    assert "\r" in err, "the live progress line"

    code, report, err = bench(
        capsys, "consume", "--namesrv", ns, "--topic", "BenchA", "--group", "BenchG", "--count", "2000",
        "--from-start", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert (report["count"], report["errors"], report["stopped_by"]) == (2000, 0, "count")
    assert report["queues"] == 4
    assert report["commit_failures"] == 0
    assert "\r" not in err

    # The offsets were committed: the same group has nothing left to read.
    code, report, err = bench(
        capsys, "consume", "--namesrv", ns, "--topic", "BenchA", "--group", "BenchG", "--idle-timeout", "0.5",
        "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert (report["count"], report["stopped_by"]) == (0, "idle")


def test_batch_and_oneway_produce(server: ServerProcess, capsys: pytest.CaptureFixture[str]) -> None:
    ns = server.namesrv_addr
    code, report, err = bench(
        capsys, "produce", "--namesrv", ns, "--topic", "BenchB", "--count", "2000", "--batch", "32",
        "--concurrency", "4", "--size", "64", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert (report["count"], report["errors"]) == (2000, 0)
    assert report["settings"]["batch"] == 32
    code, report, err = bench(
        capsys, "produce", "--namesrv", ns, "--topic", "BenchB", "--count", "1000", "--mode", "oneway",
        "--concurrency", "4", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert (report["count"], report["errors"]) == (1000, 0)
    code, report, err = bench(
        capsys, "consume", "--namesrv", ns, "--topic", "BenchB", "--group", "BenchGB", "--count", "3000",
        "--from-start", "--no-progress",
    )  # fmt: skip
    assert (code, report["count"]) == (0, 3000), "every batched and oneway message was stored"


def test_fixed_rate_and_duration(server: ServerProcess, capsys: pytest.CaptureFixture[str]) -> None:
    code, report, err = bench(
        capsys, "produce", "--namesrv", server.namesrv_addr, "--topic", "BenchC", "--rate", "400",
        "--duration", "1", "--concurrency", "8", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert 300 <= report["count"] <= 440
    assert report["seconds"] == pytest.approx(1.0, abs=0.5)


def test_e2e_reports_produce_to_consume_latency(server: ServerProcess, capsys: pytest.CaptureFixture[str]) -> None:
    code, report, err = bench(
        capsys, "e2e", "--namesrv", server.namesrv_addr, "--topic", "BenchE", "--rate", "500", "--duration", "1",
        "--concurrency", "8", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert report["count"] == report["produced"] > 300
    assert report["stopped_by"] == "count"
    assert 0 < report["latency_ms"]["p50"] < 1000
    assert report["send_latency_ms"]["p50"] > 0


def test_errors_are_reported_not_raised(server: ServerProcess, capsys: pytest.CaptureFixture[str]) -> None:
    code, report, err = bench(capsys, "consume", "--namesrv", server.namesrv_addr, "--topic", "BenchNoSuchTopic")
    assert code == 1
    assert report == {}
    assert "BenchNoSuchTopic" in err
    code, _, err = bench(capsys, "e2e", "--namesrv", server.namesrv_addr, "--size", "4")
    assert code == 2
    assert "--size" in err
