"""Each benchmark starts, runs on a tiny size and writes its results (never the real sizes).

The benchmarks themselves never run in the test suite; these only check that every command
(``python -m benchmarks.<name>``) still works end to end: triochat and the naive baseline, a
scratch output directory, and a report that says which results are missing.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120


def run_module(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m benchmarks.<name> ARGS`` from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=ROOT,
        check=False,
    )


def run_benchmark(name: str, out_dir: Path, *args: str) -> dict[str, object]:
    result = run_module(name, "--out-dir", str(out_dir), *args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out_dir / "RESULTS.md").exists()
    data: dict[str, object] = json.loads((out_dir / "results" / f"{name}.json").read_text())
    return data


def test_fanout_tiny(tmp_path: Path) -> None:
    data = run_benchmark("fanout", tmp_path, "--tiny", "--servers", "triochat,naive")
    rows = data["rows"]
    assert isinstance(rows, list)
    triochat = [r for r in rows if r["server"] == "triochat"]
    assert {r["scenario"] for r in triochat} == {"n10", "paced", "slow"}
    for row in triochat:
        assert "failed" not in row, row
        assert row["deliveries"] == row["expected"] > 0
        assert row["duplicates"] == row["out_of_order"] == 0
    assert "Fan-out" in (tmp_path / "RESULTS.md").read_text()


def test_idle_tiny(tmp_path: Path) -> None:
    data = run_benchmark("idle", tmp_path, "--sizes", "20", "--servers", "triochat,naive")
    rows = data["rows"]
    assert isinstance(rows, list)
    assert [r["server"] for r in rows] == ["triochat", "naive"]
    for row in rows:
        assert row["registered"] == 20, row
    # The report says which benchmarks have no results here, instead of leaving them out.
    report = (tmp_path / "RESULTS.md").read_text()
    assert "no `results/fanout.json`; `python -m benchmarks.fanout` writes it" in report


def test_report_without_results_keeps_the_old_file(tmp_path: Path) -> None:
    (tmp_path / "RESULTS.md").write_text("kept\n")
    result = run_module("report", str(tmp_path))
    assert result.returncode == 1
    assert "no results in" in result.stderr
    assert (tmp_path / "RESULTS.md").read_text() == "kept\n"


def test_file_relay_tiny(tmp_path: Path) -> None:
    data = run_benchmark("file_relay", tmp_path, "--sizes-mib", "2")
    rows = data["rows"]
    assert isinstance(rows, list)
    (row,) = rows
    assert row["triochat"]["relay_mb_s"] > 0
    if "mb_s" in row["socat"]:
        assert row["socat"]["verified"] is True
    else:  # skipped, never installed: what to install is said
        assert "apt-get install socat" in row["socat"]["skipped"]
    concurrent = data["concurrent"]
    assert isinstance(concurrent, dict)
    together = concurrent["triochat"]
    assert together["verified"] is True
    assert len(together["transfer_mb_s"]) == together["transfers"] > 1
    assert together["relay_mb_s"] > 0
    targets = data["targets"]
    assert isinstance(targets, list) and targets
    assert all(target["met"] in (True, False, None) and target["detail"] for target in targets)


def test_idle_breakdown_tiny() -> None:
    result = run_module("idle_breakdown", "--members", "20")
    assert result.returncode == 0, result.stderr[-3000:]
    first, *sources = result.stdout.splitlines()
    assert first.startswith("20 members: "), first
    assert any("session.py" in line for line in sources), sources


def test_startup_tiny(tmp_path: Path) -> None:
    out = tmp_path / "startup.json"
    result = run_module(
        "startup",
        *("--runs", "1", "--warmup", "0", "--modes", "line,reference"),
        *("--timeout", "8", "--json", str(out)),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "| line (seed 000) |" in result.stdout, result.stdout
    data = json.loads(out.read_text())
    for mode in ("line", "reference"):
        for condition in ("idle", "busy"):
            series = data["modes"][mode][condition]
            assert series["failures"] == [], series
            assert len(series["samples_ms"]) == 1, series
    # The spinning processes of the busy condition are gone once the benchmark has exited.
    busy_pids = data["busy_pids"]
    assert len(busy_pids) == 2
    deadline = time.monotonic() + 5
    while any(busy_alive(pid) for pid in busy_pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(busy_alive(pid) for pid in busy_pids)


def busy_alive(pid: int) -> bool:
    """Whether ``pid`` is still one of the startup benchmark's spinning processes."""
    try:
        return b"getppid" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_room_history_tiny(tmp_path: Path) -> None:
    args = ("--members", "3", "--messages", "50", "--repeats", "2")
    result = run_module("room_history", "--out-dir", str(tmp_path), *args)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((tmp_path / "results" / "room_history.json").read_text())
    assert len(data["variants"]) == 3
    for figure in data["variants"].values():
        assert figure["ns_per_delivery_min"] > 0


def test_fanout_to_browser_members_tiny(tmp_path: Path) -> None:
    result = run_module(
        "fanout",
        "--tiny",
        "--servers",
        "triochat-web,triochat-web-all",
        "--scenarios",
        "n10",
        "--no-report",
        "--out-dir",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((tmp_path / "results" / "fanout.json").read_text())
    rows = data["rows"]
    assert {r["server"] for r in rows} == {"triochat-web", "triochat-web-all"}
    for row in rows:
        assert "failed" not in row, row
        assert row["deliveries"] == row["expected"] > 0
        assert row["duplicates"] == row["out_of_order"] == 0


def test_fanout_dialects_tiny() -> None:
    result = run_module("fanout_dialects", "--members", "3", "--messages", "20", "--runs", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["line", "web"]
    assert all("us CPU/delivery" in line for line in lines)


def test_cluster_tiny(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None or importlib.util.find_spec("coredis") is None:
        pytest.skip("needs redis-server (apt-get install redis-server) and coredis")
    result = run_module("cluster", "--tiny", "--out-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((tmp_path / "results" / "cluster.json").read_text())
    rows = data["rows"]
    assert {r["layout"] for r in rows} == {"memory", "cluster1", "cluster2"}
    for row in rows:
        assert "failed" not in row, row
        assert row["deliveries"] == row["expected"] > 0
        assert row["duplicates"] == row["out_of_order"] == 0
