"""Every benchmark in one run: fan-out, idle connections, file relay; then RESULTS.md and plots.

python benchmarks/run_all.py            # the full set, about 7 minutes here
python benchmarks/run_all.py --quick    # smaller sizes, about 4 minutes
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common, fanout, file_relay, idle, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--no-profile", action="store_true", help="skip the pyinstrument runs")
    parser.add_argument("--no-install", action="store_true", help="never apt-get install")
    parser.add_argument("--out-dir", type=Path, default=common.BENCH_DIR)
    args = parser.parse_args(argv)
    common.ensure_packages([] if args.no_install else ["ncat", "ngircd", "socat"], log=common.say)
    shared = ["--out-dir", str(args.out_dir), "--no-report"]
    if args.quick:
        shared.append("--quick")
    if args.no_install:
        shared.append("--no-install")
    profile = [] if args.no_profile else ["--profile"]
    started = time.monotonic()
    common.say("== fan-out ==")
    fanout.main([*shared, *profile])
    common.say("== idle connections ==")
    idle.main([*shared, *profile])
    common.say("== file relay ==")
    file_relay.main([*shared, *profile])
    report.write_report(args.out_dir)
    common.say(f"all benchmarks took {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
