"""What the report concludes from the counters: chart data and the status tiles."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from freshtoken.events import OUTCOMES
from freshtoken.ops_report.parse import (
    MARGIN_LABELS,
    SERIES_COLUMNS,
    LogStats,
)


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if abs(value) >= 10_000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def report_data(stats: LogStats, top: int) -> dict[str, Any]:
    """What the HTML page charts (JSON-serialisable, small whatever the input size)."""
    keys = sorted(stats.series.buckets)
    columns = {
        name: [stats.series.buckets[k][i] for k in keys]
        for i, (name, _) in enumerate(SERIES_COLUMNS)
    }
    providers = sorted(
        stats.providers.items.items(), key=lambda kv: (-kv[1].outcomes.total(), kv[0])
    )[:top]
    routes = sorted(stats.routes.items.items(), key=lambda kv: (-kv[1].count, kv[0]))[:top]
    return {
        "width_minutes": stats.series.width,
        "minutes": [k * stats.series.width for k in keys],
        "series": columns,
        "outcomes": [*OUTCOMES, "other"],
        "duration": {
            "categories": ["(all)", *(name for name, _ in providers)],
            "p50": [_round(stats.duration.quantile(0.5))]
            + [_round(ps.duration.quantile(0.5)) for _, ps in providers],
            "p95": [_round(stats.duration.quantile(0.95))]
            + [_round(ps.duration.quantile(0.95)) for _, ps in providers],
            "p99": [_round(stats.duration.quantile(0.99))]
            + [_round(ps.duration.quantile(0.99)) for _, ps in providers],
        },
        "margin": {"labels": list(MARGIN_LABELS), "counts": stats.margin_bins},
        "api_latency": {
            "categories": ["(all)", *(name for name, _ in routes)],
            "p50": [_round(stats.api_latency.quantile(0.5))]
            + [_round(rs.latency.quantile(0.5)) for _, rs in routes],
            "p95": [_round(stats.api_latency.quantile(0.95))]
            + [_round(rs.latency.quantile(0.95)) for _, rs in routes],
            "p99": [_round(stats.api_latency.quantile(0.99))]
            + [_round(rs.latency.quantile(0.99)) for _, rs in routes],
        },
    }


@dataclass
class StatusItem:
    """One tile of the status summary at the top of the HTML page."""

    label: str
    value: str
    detail: str
    level: str  # ok, warn or bad


def status_items(stats: LogStats) -> list[StatusItem]:
    """The status summary: the alert conditions of ops/README.md, judged over these logs."""
    items: list[StatusItem] = []
    failed = stats.outcomes.get("failed")
    ratio = failed / stats.refreshes if stats.refreshes else 0.0
    items.append(
        StatusItem(
            "Refresh failures",
            _pct(failed, stats.refreshes),
            f"{failed:,} of {stats.refreshes:,} attempts",
            "bad" if ratio > 0.10 else "warn" if failed else "ok",
        )
    )
    failing = stats.failing_connections()
    permanent = sum(1 for f in failing if f.error_class == "permanent")
    items.append(
        StatusItem(
            "Failing connections",
            f"{len(failing):,}",
            f"{permanent:,} need re-authorisation",
            "bad" if permanent else "warn" if failing else "ok",
        )
    )
    items.append(
        StatusItem(
            "Expired at read",
            f"{stats.expired_at_read:,}",
            f"on-read refreshes {stats.triggers.get('on_read'):,}",
            "bad" if stats.expired_at_read else "ok",
        )
    )
    gap = stats.scan_max_gap
    items.append(
        StatusItem(
            "Scheduler",
            f"{stats.scans:,} scans",
            f"longest gap {_fmt(gap)} s" if gap is not None else "no gap measured",
            "bad" if (gap or 0) > 300 or (stats.refreshes and not stats.scans) else "ok",
        )
    )
    overdue = stats.scan_overdue.max if stats.scan_overdue.count else None
    items.append(
        StatusItem(
            "Oldest overdue",
            f"{_fmt(overdue)} s",
            "alert above 1200 s",
            "bad" if (overdue or 0) > 1200 else "warn" if (overdue or 0) > 300 else "ok",
        )
    )
    api_ratio = stats.api_ge500 / stats.requests if stats.requests else 0.0
    items.append(
        StatusItem(
            "API 5xx",
            _pct(stats.api_ge500, stats.requests),
            f"{stats.api_ge500:,} of {stats.requests:,} requests",
            "bad" if api_ratio > 0.05 else "warn" if stats.api_ge500 else "ok",
        )
    )
    return items
