"""`python -m bench [--quick] [--out DIR]`: run the benchmark and write the report."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from bench import report, wrk
from bench.plan import FULL, QUICK
from bench.run import measure, say

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one short round: a smoke test")
    parser.add_argument("--out", type=Path, help="output folder (default: docs/, --quick: bench/results/)")
    parser.add_argument("--rounds", type=int, help="override the number of rounds")
    parser.add_argument("--seconds", type=int, help="override the seconds per case per round")
    parser.add_argument("--render", action="store_true", help="only rewrite the report from OUT's JSON")
    args = parser.parse_args(argv)
    out = args.out or (ROOT / "bench" / "results" if args.quick else ROOT / "docs")
    if args.render:
        results = json.loads((out / f"{report.NAME}.json").read_text())
        say("rewrote " + ", ".join(str(path) for path in report.write(results, out)))
        return 0
    if not wrk.available():
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    plan = QUICK if args.quick else FULL
    plan = replace(plan, rounds=args.rounds or plan.rounds, seconds=args.seconds or plan.seconds)
    results = measure(plan)
    written = report.write(results, out)
    say("wrote " + ", ".join(str(path) for path in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
