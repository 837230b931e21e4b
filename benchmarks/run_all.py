"""Every benchmark in one run: fan-out, idle connections, file relay; then RESULTS.md and plots.

    python -m benchmarks.run_all                 # the full set, about 7 minutes here
    python -m benchmarks.run_all --quick         # smaller sizes, about 4 minutes
    python -m benchmarks.run_all --no-profile    # without the pyinstrument runs

References that are not installed (ncat, ngircd, socat) are skipped; stderr says what to
install (apt-get install ncat ngircd socat).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from benchmarks import common, fanout, file_relay, idle, report


def main(argv: list[str] | None = None) -> int:
    parser = common.doc_parser("benchmarks.run_all", __doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--no-profile", action="store_true", help="skip the pyinstrument runs")
    parser.add_argument("--no-install", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", type=Path, default=common.BENCH_DIR)
    args = parser.parse_args(argv)
    shared = ["--out-dir", str(args.out_dir), "--no-report"]
    if args.quick:
        shared.append("--quick")
    if not args.no_profile:
        shared.append("--profile")
    started = time.monotonic()
    for title, benchmark in (
        ("fan-out", fanout),
        ("idle connections", idle),
        ("file relay", file_relay),
    ):
        common.say(f"== {title} ==")
        benchmark.main(shared)
    report.write_report(args.out_dir)
    common.say(f"all benchmarks took {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
