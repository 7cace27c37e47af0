"""The results as JSON (bench/results/latest.json) and as a table for the terminal."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


def table(results: dict[str, Any]) -> str:
    machine = results["machine"]
    lines = [
        f"Marketplace Monitor benchmarks, {results['size']} size, {results['started_at']}",
        f"{machine['cpus']} CPUs, {machine['memory_gb']} GB, Python {machine['python']}, "
        f"load average at start {machine['load_average_at_start'][0]}",
    ]
    scenarios = results["scenarios"]
    if "cycle" in scenarios:
        lines += ["", *_cycle(scenarios["cycle"])]
    if "alert" in scenarios:
        lines += ["", *_alert(scenarios["alert"])]
    if "api" in scenarios:
        lines += ["", *_api(scenarios["api"])]
    targets = [t for s in scenarios.values() for t in s.get("targets", [])]
    if targets:
        note = "" if results["size"] == "full" else " (stated for the full size)"
        lines += ["", f"Targets{note}"]
        lines += _grid(
            ["target", "measured", "goal", ""],
            [
                [t["name"], _fmt(t["value"]), t["target"], "met" if t["met"] else "MISSED"]
                for t in targets
            ],
        )
    return "\n".join(lines)


def _cycle(result: dict[str, Any]) -> list[str]:
    p = result["params"]
    engine, in_process, base = (
        result["engine_celery"],
        result["engine_in_process"],
        result["baseline"],
    )
    ratios = result["ratios"]
    scaled = (
        f" (baseline ran {p['baseline_searches']} of them; its wall time is scaled up)"
        if base["is_scaled_from_sample"]
        else ""
    )
    header = [
        f"1. Check cycle: {p['searches']:,} searches, {p['users']:,} users, "
        f"Zipf({p['zipf_exponent']}) over {p['distinct_queries']:,} queries "
        f"({p['distinct_queries_drawn']:,} drawn), "
        f"{p['upstream_latency_ms']:g} ms upstream, Celery -c {p['worker_concurrency']}{scaled}",
    ]
    rows = [
        [
            "wall time, s",
            _fmt(engine["wall_s"]),
            _fmt(in_process["wall_s"]),
            _fmt(base["wall_s_all_searches"]),
            f"{ratios['speedup_celery_vs_baseline']:g}x faster",
        ],
        [
            "upstream calls per search-check",
            _fmt(engine["calls_per_search_check"]),
            _fmt(in_process["calls_per_search_check"]),
            _fmt(base["calls_per_search_check"]),
            f"{ratios['calls_per_search_check_engine_vs_baseline']:g}x",
        ],
        [
            "listings upserted/s",
            _fmt(engine["listings_upserted_per_s"]),
            _fmt(in_process["listings_upserted_per_s"]),
            _fmt(base["listings_upserted_per_s"]),
            f"{ratios['listings_upserted_per_s_engine_vs_baseline']:g}x",
        ],
        [
            "search-checks/s",
            _fmt(engine["search_checks_per_s"]),
            _fmt(in_process["search_checks_per_s"]),
            _fmt(base["search_checks_per_s"]),
            "",
        ],
        [
            "peak worker RSS, MB (one process / all)",
            f"{_fmt(engine['peak_worker_rss_mb'])} / {_fmt(engine['peak_worker_tree_rss_mb'])}",
            "-",
            f"{_fmt(base['peak_worker_rss_mb'])} / {_fmt(base['peak_worker_tree_rss_mb'])}",
            "",
        ],
        [
            "matches stored / expected",
            f"{engine['matches_stored']:,} / {engine['matches_expected']:,}",
            f"{in_process['matches_stored']:,} / {in_process['matches_expected']:,}",
            f"{base['matches_stored']:,} / {base['matches_expected']:,}",
            "",
        ],
        [
            "failed checks",
            str(engine["failed_checks"]),
            str(in_process["failed_checks"]),
            str(base["failed_checks"]),
            "",
        ],
    ]
    errors = [
        f"  {name} failed check: {error}"
        for name, run in (("engine (Celery)", engine), ("in-process", in_process), ("seed", base))
        for error in run.get("errors", [])
    ]
    return (
        header
        + _grid(
            ["", "engine (Celery)", "engine (in-process)", "seed design", "Celery vs seed"], rows
        )
        + errors
    )


def _alert(result: dict[str, Any]) -> list[str]:
    p = result["params"]
    schedule = (
        "1-minute frequency"
        if not p["schedule_compressed"]
        else f"schedule compressed to a {p['interval_s']:g} s check interval"
    )
    lines = [
        f"2. Time-to-alert: {p['searches']} searches, {schedule}, "
        f"{p['publish_rate_per_s']:g} listings/s published at random "
        f"for {p['publish_window_s']:g} s, "
        f"scheduler tick {p['tick_s']:g} s, webhook delivery"
    ]
    rows = []
    for mode in ("celery", "embedded"):
        m = result.get(mode)
        if m is None:
            continue
        total, overhead = m["arrival_minus_publish_s"], m["arrival_minus_next_check_s"]
        rows.append(
            [
                mode,
                f"{m['published']} / {m['alerted']} / {m['lost']}",
                f"{_fmt(total['p50'])} / {_fmt(total['p95'])} / {_fmt(total['p99'])}",
                f"{_fmt(overhead['p50'])} / {_fmt(overhead['p95'])} / {_fmt(overhead['p99'])}",
            ]
        )
    return lines + _grid(
        [
            "mode",
            "published / alerted / lost",
            "arrival - publish p50/p95/p99, s",
            "same minus wait for next check, s",
        ],
        rows,
    )


def _api(result: dict[str, Any]) -> list[str]:
    p = result["params"]
    health, listings = result["health"], result["listings"]
    lines = [
        f"3. API: uvicorn --workers {p['api_workers']} on PostgreSQL, {p['listings']:,} listings, "
        f"user with {p['matches']:,} matches, {p['connections']} connections, "
        f"{p['duration_s']:g} s each, load from {p['load_generator']}"
    ]
    rows = [
        [
            name,
            _fmt(m["rps"]),
            _fmt(m["p50_ms"]),
            _fmt(m["p99_ms"]),
            str(m["errors"]),
        ]
        for name, m in (("GET /health", health), ("GET /api/v1/listings/?limit=50", listings))
    ]
    rows.append(["listings vs /health", f"{result['ratios']['rps']:g}x", "", "", ""])
    return lines + _grid(["endpoint", "requests/s", "p50 ms", "p99 ms", "errors"], rows)


def _grid(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            str(cell).ljust(width) if i == 0 else str(cell).rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(row) for row in rows)]


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
