"""The file-relay benchmark's arithmetic: medians, RSS along a transfer, targets met or not."""

from __future__ import annotations

from typing import Any

from benchmarks.file_relay import (
    GIB,
    check_targets,
    median_run,
    per_gib,
    rss_at_fractions,
    summarise,
)


def test_summarise_takes_medians_and_keeps_the_spread() -> None:
    runs = [{"mb_s": 300.0, "cpu": 1.0}, {"mb_s": 100.0, "cpu": 3.0}, {"mb_s": 200.0}]
    summary = summarise(runs, ("mb_s", "cpu", "absent"))
    assert summary["mb_s"] == 200.0
    assert summary["cpu"] == 2.0  # median of the runs that have it
    assert summary["spread"] == {"mb_s": [100.0, 300.0], "cpu": [1.0, 3.0]}
    assert "absent" not in summary
    assert summary["runs"] is runs


def test_per_gib() -> None:
    assert per_gib(3.0, GIB // 2) == 6.0


def test_rss_at_fractions_picks_the_nearest_sample() -> None:
    samples = [(0.0, 1024), (1.0, 2048), (2.0, 3072), (3.0, 4096), (4.0, 1024)]
    assert rss_at_fractions(samples, 4.0) == {"25%": 2.0, "50%": 3.0, "75%": 4.0, "100%": 1.0}
    assert rss_at_fractions([], 1.0) == {}


def single_row(size_mib: int, mb_s: float, cpu: float, rss: float) -> dict[str, Any]:
    return {
        "size_mib": size_mib,
        "triochat": {"relay_mb_s": mb_s, "server_cpu_s_per_gib": cpu, "server_peak_rss_mib": rss},
        "socat": {"mb_s": 500.0, "relay_cpu_s_per_gib": 1.0},
    }


def verdicts(found: list[dict[str, Any]]) -> dict[str, bool | None]:
    return {item["target"]: item["met"] for item in found}


def test_targets_use_the_largest_single_size() -> None:
    rows = [single_row(64, 100.0, 9.0, 99.0), single_row(1024, 600.0, 1.5, 40.0)]
    together = {
        "transfers": 8,
        "size_mib": 256,
        "triochat": {"relay_mb_s": 550.0, "server_peak_rss_mib": 70.0},
    }
    big = {"size_mib": 4096, "triochat": {"server_peak_rss_mib": 41.0}}
    assert verdicts(check_targets(rows, together, big)) == {
        "1,024 MiB: triochat MB/s ≥ socat chain's": True,
        "1,024 MiB: server CPU s/GiB ≤ 1.5 x socat relay's": True,
        "1,024 MiB: server peak RSS < 64 MiB": True,
        "8 x 256 MiB at once: server peak RSS < 64 MiB": False,
        "4,096 MiB: server peak RSS < 64 MiB": True,
        "8 x 256 MiB at once: aggregate MB/s ≥ 1,024 MiB single": False,
    }


def test_targets_not_measured_say_why() -> None:
    row = single_row(64, 100.0, 2.0, 30.0)
    row["socat"] = {"skipped": "socat not installed"}
    found = check_targets([row], None, None)
    assert [item["met"] for item in found] == [None, None, True, None, None, None]
    assert found[0]["detail"] == "no socat figures"
    assert found[-1]["detail"] == "not run"


def test_median_run_keeps_one_runs_figures_and_every_runs_aggregate() -> None:
    runs = [
        {"relay_mb_s": 900.0, "server_cpu_s_per_gib": 0.5},
        {"relay_mb_s": 700.0, "server_cpu_s_per_gib": 0.7},
        {"relay_mb_s": 800.0, "server_cpu_s_per_gib": 0.6},
    ]
    chosen = median_run(runs, "relay_mb_s")
    assert chosen["relay_mb_s"] == 800.0
    assert chosen["server_cpu_s_per_gib"] == 0.6  # the same run's, not a median of each
    assert chosen["aggregate_mb_s_runs"] == [900.0, 700.0, 800.0]
    assert median_run(runs[:2], "relay_mb_s")["relay_mb_s"] == 700.0
