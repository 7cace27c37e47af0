"""`python -m bench [--smoke|--quick|--full] [--scenario cycle|alert|api ...]`: run the
benchmarks, print a table and write bench/results/latest.json."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from bench import report
from bench.infra import BenchSetupError
from bench.runner import SCENARIOS, run_all
from bench.sizes import SIZES

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", dest="size", action="store_const", const="quick")
    size.add_argument("--full", dest="size", action="store_const", const="full")
    size.add_argument(
        "--smoke", dest="size", action="store_const", const="smoke", help="tiny sizes, for CI"
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=list(SCENARIOS),
        help="run only this scenario (repeatable); default: all",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the JSON")
    options = parser.parse_args(argv)
    size_name = options.size or "quick"
    try:
        results = asyncio.run(run_all(SIZES[size_name], options.scenario or list(SCENARIOS)))
    except BenchSetupError as exc:
        print(f"bench: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    report.write_json(results, options.output)
    print(report.table(results))  # noqa: T201
    print(f"\nwritten to {options.output}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
