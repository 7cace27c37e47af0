"""Benchmarks: `python -m bench --quick` (`make bench`) or `--full` (`make bench-full`)."""
