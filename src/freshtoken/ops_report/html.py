"""The self-contained HTML page (its script and style sheet are package data files)."""

from __future__ import annotations

import base64
import hashlib
import html
import json
from importlib.resources import files

from freshtoken.ops_report.parse import (
    RELATIVE_ACCURACY,
    LogStats,
)
from freshtoken.ops_report.summary import (
    report_data,
    status_items,
)
from freshtoken.ops_report.text import (
    summary_lines,
)

# Package data files (shipped in the wheel, see pyproject's package-data): read once at import.
# The page's Content-Security-Policy hashes _JS, so it is used exactly as read.
_CSS = files("freshtoken.ops_report").joinpath("report.css").read_text(encoding="utf-8")
_JS = files("freshtoken.ops_report").joinpath("report.js").read_text(encoding="utf-8")

_CHARTS = (
    ("chart-refresh-outcomes", "Refreshes per minute by outcome", "token.refresh lines"),
    (
        "chart-on-read",
        "Synchronous on-read refreshes per minute",
        "trigger=on_read; should stay near zero",
    ),
    ("chart-duration", "Refresh duration by provider", "duration_ms p50 / p95 / p99"),
    (
        "chart-margin",
        "Proactive margin at successful refreshes",
        "seconds_to_expiry when the refresh succeeded",
    ),
    ("chart-scan-due", "Scan: connections due", "refresh.scan due, highest per time bucket"),
    ("chart-scan-rate", "Scan: scans and enqueued refreshes", "refresh.scan lines, per minute"),
    ("chart-overdue", "Scan: oldest overdue", "refresh.scan oldest_overdue_seconds (max)"),
    ("chart-api", "API requests per minute by status", "api.request lines"),
    ("chart-api-latency", "API latency by route", "duration_ms p50 / p95 / p99"),
)


def _failing_table(stats: LogStats, top: int) -> str:
    failing = stats.failing_connections()
    if not failing:
        return '<p class="muted" id="failing">No connection whose latest attempt failed.</p>'
    headers = ["connection", "integration", "provider", "last error", "class", "http", "fails"]
    headers += ["last failure (UTC)", "log_id"]
    rows = []
    for f in failing[:top]:
        cells = [
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
        tds = "".join(
            f'<td class="{"" if i in (5, 6) else "text"}">{html.escape(c)}</td>'
            for i, c in enumerate(cells)
        )
        rows.append(f"<tr>{tds}</tr>")
    more = len(failing) - min(len(failing), top)
    note = f'<p class="muted">and {more:,} more (--top)</p>' if more else ""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    return (
        f'<div class="scroll"><table id="failing"><tr>{head}</tr>{"".join(rows)}</table></div>'
        f"{note}"
    )


def render_html(stats: LogStats, top: int) -> str:
    """One self-contained HTML page: status, failing connections, charts, the text summary."""
    data = json.dumps(report_data(stats, top), separators=(",", ":"), allow_nan=False)
    # Inside <script>, "<" must never start a tag: JSON allows it escaped.
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    script_hash = base64.b64encode(hashlib.sha256(_JS.encode()).digest()).decode()
    csp = (
        "default-src 'none'; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{script_hash}'; img-src data:"
    )
    summary = html.escape("\n".join(summary_lines(stats, top)))
    items = status_items(stats)
    worst = (
        "bad"
        if any(i.level == "bad" for i in items)
        else ("warn" if any(i.level == "warn" for i in items) else "ok")
    )
    verdict = {
        "ok": "All clear: no alert condition in these logs.",
        "warn": "Attention: something failed, but no alert condition is met.",
        "bad": "Problem: at least one alert condition is met (red tiles).",
    }[worst]
    tiles = "\n".join(
        f'<div class="tile {i.level}" data-level="{i.level}"><span>{html.escape(i.label)}</span>'
        f"<b>{html.escape(i.value)}</b><span>{html.escape(i.detail)}</span></div>"
        for i in items
    )
    cards = "\n".join(
        f'<div class="card" id="{cid}"><h3>{html.escape(title)}</h3>'
        f'<div class="muted">{html.escape(note)}</div></div>'
        for cid, title, note in _CHARTS
    )
    span = f"{html.escape(stats.first_ts or '-')} .. {html.escape(stats.last_ts or '-')}"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>freshtoken log report</title>
<style>{_CSS}</style>
</head>
<body data-charts-drawn="0">
<h1>freshtoken log report</h1>
<div class="muted">{span} (UTC) &middot; {stats.lines:,} lines &middot; percentiles within
{RELATIVE_ACCURACY:.0%} (relative) &middot; time buckets of {stats.series.width} min</div>
<div class="verdict {worst}" id="verdict">{html.escape(verdict)}</div>
<section class="status" id="status">
{tiles}
</section>
<h2>Failing connections (latest attempt failed)</h2>
{_failing_table(stats, top)}
<h2>Charts</h2>
<div class="grid">
{cards}
</div>
<h2>Summary</h2>
<pre>{summary}</pre>
<script type="application/json" id="report-data">{data}</script>
<script>{_JS}</script>
</body>
</html>
"""


# -- the command -------------------------------------------------------------------------------
