"""Each benchmark starts, runs on a tiny size and writes its results (never the real sizes).

The benchmarks themselves never run in the test suite; these only check that every command
still works end to end: triochat and the naive baseline, no package installs, a scratch
output directory.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120


def run_benchmark(script: str, out_dir: Path, *args: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--out-dir", str(out_dir), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out_dir / "RESULTS.md").exists()
    name = script.removesuffix(".py")
    data: dict[str, object] = json.loads((out_dir / "results" / f"{name}.json").read_text())
    return data


def test_fanout_tiny(tmp_path: Path) -> None:
    data = run_benchmark(
        "fanout.py", tmp_path, "--tiny", "--servers", "triochat,naive", "--no-install"
    )
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
    data = run_benchmark(
        "idle.py", tmp_path, "--sizes", "20", "--servers", "triochat,naive", "--no-install"
    )
    rows = data["rows"]
    assert isinstance(rows, list)
    assert [r["server"] for r in rows] == ["triochat", "naive"]
    for row in rows:
        assert row["registered"] == 20, row


def test_file_relay_tiny(tmp_path: Path) -> None:
    data = run_benchmark("file_relay.py", tmp_path, "--sizes-mib", "2", "--no-install")
    rows = data["rows"]
    assert isinstance(rows, list)
    (row,) = rows
    assert row["triochat"]["relay_mb_s"] > 0
    if "mb_s" in row["socat"]:
        assert row["socat"]["verified"] is True


def test_idle_breakdown_tiny() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "idle_breakdown.py"), "--members", "20"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    first, *sources = result.stdout.splitlines()
    assert first.startswith("20 members: "), first
    assert any("session.py" in line for line in sources), sources
