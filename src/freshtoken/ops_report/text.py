"""The terminal summary of ``freshtoken report``, one function per section it prints."""

from __future__ import annotations

import re

from freshtoken.events import OUTCOMES, TRIGGERS
from freshtoken.ops_report.parse import (
    MARGIN_LABELS,
    RELATIVE_ACCURACY,
    LogStats,
    QuantileSketch,
    _parse_ts,
)
from freshtoken.ops_report.summary import _fmt, _pct

_NUMERIC = re.compile(r"-|-?[\d,]+(\.\d+)?%?")


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    """A plain-text table: numeric columns right-aligned, text columns left-aligned."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    numeric = [
        bool(rows) and all(_NUMERIC.fullmatch(row[i]) for row in rows) for i in range(len(headers))
    ]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(cells, widths, numeric, strict=True)
        ).rstrip()

    return [
        "  " + line(headers),
        "  " + "  ".join("-" * w for w in widths),
        *("  " + line(row) for row in rows),
    ]


def _quantiles(sketch: QuantileSketch) -> list[str]:
    return [_fmt(sketch.quantile(q)) for q in (0.5, 0.95, 0.99)] + [
        _fmt(sketch.max if sketch.count else None)
    ]


def summary_lines(stats: LogStats, top: int) -> list[str]:
    """The terminal report, line by line: its sections in the order they print."""
    span = stats.span_seconds()
    minutes = span / 60 if span else None
    rate_minutes = minutes if minutes and minutes >= 1 else None  # no per-minute rate below 1 min
    return [
        *_header_section(stats),
        *_refresh_section(stats, top, rate_minutes),
        *_scan_section(stats),
        *_api_section(stats, top, rate_minutes),
        *_webhook_section(stats, top),
        *_failing_section(stats, top),
        *_other_events_section(stats, top),
    ]


def _header_section(stats: LogStats) -> list[str]:
    """Title, line counts, time span, and why nothing was read when that is the case."""
    out: list[str] = []
    span = stats.span_seconds()
    minutes = span / 60 if span else None
    out.append("freshtoken log report")
    out.append(
        f"  lines {stats.lines:,}: events {stats.events.total():,}, malformed {stats.malformed:,}, "
        f"foreign {stats.foreign:,}, invalid {stats.invalid:,}, blank {stats.blank:,}"
    )
    out.append(
        f"  time {stats.first_ts or '-'} .. {stats.last_ts or '-'}"
        + (f" ({minutes:,.1f} min)" if minutes else "")
    )
    out.append(f"  percentiles are estimates within {RELATIVE_ACCURACY:.0%} (relative)")
    if stats.console:
        out.append(
            f"  {stats.console:,} lines are in freshtoken's console format, which this report "
            "cannot read: it reads the JSON lines (FRESHTOKEN_LOG_FORMAT=json, the default when "
            "the logs go to a file or pipe)"
        )
    elif stats.malformed and not stats.events.total():
        out.append(
            "  no freshtoken JSON line found: this report reads the JSON log format "
            "(FRESHTOKEN_LOG_FORMAT=json, one JSON object per line)"
        )
    return out


def _refresh_section(stats: LogStats, top: int, rate_minutes: float | None) -> list[str]:
    """``token.refresh``: attempts by provider and outcome, margin, on-read, locks, error codes."""
    out: list[str] = []
    out.append("")
    failed = stats.outcomes.get("failed")
    rate = f", {stats.refreshes / rate_minutes:,.2f}/min" if rate_minutes else ""
    out.append(
        f"Token refreshes: {stats.refreshes:,} attempts{rate}; "
        f"failure ratio {_pct(failed, stats.refreshes)} (failed / all attempts)"
    )
    if stats.refreshes:
        outcome_names = [*OUTCOMES, *sorted(set(stats.outcomes.counts) - set(OUTCOMES))]
        rows = []
        for name, ps in sorted(
            stats.providers.items.items(), key=lambda kv: (-kv[1].outcomes.total(), kv[0])
        ):
            total = ps.outcomes.total()
            rows.append(
                [
                    name,
                    f"{total:,}",
                    *(f"{ps.outcomes.get(o):,}" for o in outcome_names),
                    _pct(ps.outcomes.get("failed"), total),
                    *_quantiles(ps.duration)[:3],
                ]
            )
        rows.append(
            [
                "(all)",
                f"{stats.refreshes:,}",
                *(f"{stats.outcomes.get(o):,}" for o in outcome_names),
                _pct(failed, stats.refreshes),
                *_quantiles(stats.duration)[:3],
            ]
        )
        headers = ["provider", "attempts", *outcome_names, "fail%", "p50 ms", "p95 ms", "p99 ms"]
        out += _table(headers, rows)
        trigger_names = [*TRIGGERS, *sorted(set(stats.triggers.counts) - set(TRIGGERS))]
        out.append(
            "  by trigger: " + ", ".join(f"{t} {stats.triggers.get(t):,}" for t in trigger_names)
        )
        out.append("  duration ms: p50 {} p95 {} p99 {} max {}".format(*_quantiles(stats.duration)))

        out.append("")
        out.append("Proactive margin (seconds_to_expiry of successful refreshes)")
        margin_rows = [
            [
                trigger,
                f"{sk.count:,}",
                _fmt(sk.min if sk.count else None),
                *(_fmt(sk.quantile(q)) for q in (0.05, 0.5, 0.95)),
            ]
            for trigger, sk in sorted(stats.margin_by_trigger.items.items())
        ]
        margin_rows.append(
            [
                "(all)",
                f"{stats.margin.count:,}",
                _fmt(stats.margin.min if stats.margin.count else None),
                *(_fmt(stats.margin.quantile(q)) for q in (0.05, 0.5, 0.95)),
            ]
        )
        out += _table(["trigger", "successes", "min s", "p5 s", "p50 s", "p95 s"], margin_rows)
        out.append(
            "  histogram: "
            + ", ".join(
                f"{label} {n:,}"
                for label, n in zip(MARGIN_LABELS, stats.margin_bins, strict=True)
                if n
            )
        )

        out.append("")
        on_read = stats.triggers.get("on_read")
        out.append(
            f"On-read refreshes: {on_read:,} ({_pct(on_read, stats.refreshes)} of attempts; "
            f"should stay near zero); found already expired: {stats.expired_at_read:,}"
        )
        if on_read:
            out.append(
                "  by outcome: "
                + ", ".join(f"{k} {v:,}" for k, v in stats.on_read_outcomes.most_common())
            )
        out.append(
            f"Locks: wait ms p50 {_fmt(stats.lock_wait.quantile(0.5))} "
            f"p95 {_fmt(stats.lock_wait.quantile(0.95))} "
            f"max {_fmt(stats.lock_wait.max if stats.lock_wait.count else None)}; "
            f"lock timeouts {stats.outcomes.get('lock_timeout'):,}; "
            f"fenced writes {stats.outcomes.get('fenced'):,}"
        )
        if stats.error_codes.counts:
            out.append("")
            out.append("Failures by error code (class)")
            out += _table(
                ["error code (class)", "failures"],
                [[k, f"{v:,}"] for k, v in stats.error_codes.most_common(top)],
            )
    return out


def _scan_section(stats: LogStats) -> list[str]:
    """``refresh.scan``: due, claimed, enqueued, overdue, scan duration and gaps."""
    out: list[str] = []
    out.append("")
    out.append(f"Scan health: {stats.scans:,} scans")
    if stats.scans:
        out.append(
            f"  due {stats.scan_due:,} (max per scan {stats.scan_due_max:,.0f}), claimed "
            f"{stats.scan_claimed:,}, enqueued {stats.scan_enqueued:,}, "
            f"skipped (publish failed) {stats.scan_skipped:,}"
        )
        overdue = stats.scan_overdue
        out.append(
            f"  oldest overdue s: p50 {_fmt(overdue.quantile(0.5))} "
            f"p95 {_fmt(overdue.quantile(0.95))} max {_fmt(overdue.max if overdue.count else None)}"
            "  (alert above 1200)"
        )
        out.append(
            "  scan duration ms: p50 {} p95 {} p99 {} max {}".format(
                *_quantiles(stats.scan_duration)
            )
        )
        gap = _fmt(stats.scan_max_gap) if stats.scan_max_gap is not None else "-"
        tail = None
        if stats.last_scan_ts and stats.last_ts:
            last_scan, last_line = _parse_ts(stats.last_scan_ts), _parse_ts(stats.last_ts)
            if last_scan and last_line:
                tail = (last_line - last_scan).total_seconds()
        out.append(
            f"  longest gap between scans {gap} s; last scan {_fmt(tail)} s before the last line"
            "  (alert: no scan for 300 s)"
        )
    return out


def _api_section(stats: LogStats, top: int, rate_minutes: float | None) -> list[str]:
    """``api.request``: rate, statuses, latency, and the busiest routes."""
    out: list[str] = []
    out.append("")
    api_rate = f", {stats.requests / rate_minutes:,.2f}/min" if rate_minutes else ""
    out.append(
        f"API: {stats.requests:,} requests{api_rate}; status>=500 {stats.api_ge500:,} "
        f"({_pct(stats.api_ge500, stats.requests)}), status>=400 {stats.api_ge400:,} "
        f"({_pct(stats.api_ge400, stats.requests)})"
    )
    if stats.requests:
        out.append(
            "  latency ms: p50 {} p95 {} p99 {} max {}".format(*_quantiles(stats.api_latency))
        )
        out.append(
            "  by status: " + ", ".join(f"{k} {v:,}" for k, v in stats.statuses.most_common())
        )
        route_rows = [
            [
                name,
                f"{rs.count:,}",
                _pct(rs.ge400, rs.count),
                _pct(rs.ge500, rs.count),
                *_quantiles(rs.latency)[:3],
            ]
            for name, rs in sorted(
                stats.routes.items.items(), key=lambda kv: (-kv[1].count, kv[0])
            )[:top]
        ]
        out += _table(
            ["route", "requests", ">=400", ">=500", "p50 ms", "p95 ms", "p99 ms"], route_rows
        )
    return out


def _webhook_section(stats: LogStats, top: int) -> list[str]:
    """``webhook.delivery``: attempts by outcome and the deliveries given up (only if any)."""
    out: list[str] = []
    if stats.webhook_attempts:
        out.append("")
        out.append(
            f"Webhooks: {stats.webhook_attempts:,} delivery attempts; "
            + ", ".join(f"{k} {v:,}" for k, v in stats.webhook_outcomes.most_common())
        )
        if stats.webhook_failed.total():
            out.append(
                "  given up (operation -> receiver): "
                + ", ".join(f"{k} {v:,}" for k, v in stats.webhook_failed.most_common(top))
            )
    return out


def _failing_section(stats: LogStats, top: int) -> list[str]:
    """Connections whose latest refresh attempt failed."""
    out: list[str] = []
    out.append("")
    failing = stats.failing_connections()
    permanent = sum(1 for f in failing if f.error_class == "permanent")
    bound = f" (at least; {stats.failing_evicted:,} evicted)" if stats.failing_evicted else ""
    out.append(
        f"Failing connections (latest attempt failed): {len(failing):,}{bound}; "
        f"needing re-authorisation (permanent): {permanent:,}"
    )
    if failing:
        out += _table(
            [
                "connection",
                "integration",
                "provider",
                "last error",
                "class",
                "http",
                "fails",
                "last failure",
                "log_id",
            ],
            [
                [
                    f.connection_id,
                    f.provider_config_key,
                    f.provider,
                    f.error_code,
                    f.error_class,
                    str(f.http_status) if f.http_status is not None else "-",
                    f"{f.failures:,}",
                    f.last_failure or "-",
                    f.log_id or "-",
                ]
                for f in failing[:top]
            ],
        )
    return out


def _other_events_section(stats: LogStats, top: int) -> list[str]:
    """Events this report has no view for, most frequent first."""
    out: list[str] = []
    notable = [(k, v) for k, v in stats.events.most_common() if k not in stats._handlers][:top]
    if notable:
        out.append("")
        out.append("Other events: " + ", ".join(f"{k} {v:,}" for k, v in notable))
    return out


# -- HTML --------------------------------------------------------------------------------------
