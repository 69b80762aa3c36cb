"""``freshtoken report``: the on-call dashboard's views from JSON log files, without Grafana.

Reads freshtoken's JSON lines (``token.refresh``, ``refresh.scan``, ``api.request``; schema in
``ops/README.md``) from files or stdin in ONE streaming pass and prints a terminal summary; with
``--html`` it also writes one self-contained HTML page with charts (inline SVG drawn by inline
JavaScript: no external script, style sheet or font; it opens with no network).

Memory stays flat whatever the input size; nothing keeps a list of events:

* counters per provider, outcome, trigger, error code, route and event name, each capped at
  :data:`MAX_KEYS` distinct keys (later new keys are counted under ``(other)``);
* percentiles come from :class:`QuantileSketch`, a fixed log-bucket histogram whose estimate is
  within :data:`RELATIVE_ACCURACY` (1 %) of the true value of that rank;
* time series are per-minute buckets capped at :data:`MAX_BUCKETS`: past the cap the bucket width
  doubles (1, 2, 4, ... minutes) and neighbours merge (:class:`MinuteSeries`);
* failing connections are kept in an LRU dict of at most :data:`MAX_FAILING` entries (the least
  recently failing is evicted first; a later success removes a connection);
* a line longer than :data:`MAX_LINE_BYTES` is skipped without being held in memory.

Lines that are not JSON objects are counted as malformed; JSON objects without an ``event`` string
are counted as foreign (another program's logs); known events with unusable fields are counted as
invalid. None of them stops the report. ``docker compose logs`` prefixes (``api-1  | {...}``) and
Docker's json-file envelope (``{"log": "{...}\\n", "stream": ...}``) are unwrapped; gzip files are
read transparently.
"""

from __future__ import annotations

from pathlib import Path

import click

# The package's modules, in the order the data flows: parse (one streaming pass into bounded
# counters) -> summary (what they say: status tiles, chart data) -> text (the terminal summary)
# and html (the page). Their names are re-exported so ``freshtoken.ops_report.X`` keeps working.
from freshtoken.ops_report.html import _CHARTS, render_html
from freshtoken.ops_report.parse import (
    _COL,
    MARGIN_EDGES,
    MARGIN_LABELS,
    MAX_BUCKETS,
    MAX_FAILING,
    MAX_KEYS,
    MAX_LAST_OK,
    MAX_LINE_BYTES,
    OTHER,
    RELATIVE_ACCURACY,
    SERIES_COLUMNS,
    UNKNOWN,
    UNMATCHED,
    BoundedCounter,
    BoundedMap,
    FailingConnection,
    LogStats,
    MinuteSeries,
    ProviderStats,
    QuantileSketch,
    RouteStats,
    _progress_bar,
    collect,
)
from freshtoken.ops_report.summary import StatusItem, report_data, status_items
from freshtoken.ops_report.text import summary_lines

__all__ = [
    "MARGIN_EDGES",
    "MARGIN_LABELS",
    "MAX_BUCKETS",
    "MAX_FAILING",
    "MAX_KEYS",
    "MAX_LAST_OK",
    "MAX_LINE_BYTES",
    "OTHER",
    "RELATIVE_ACCURACY",
    "SERIES_COLUMNS",
    "UNKNOWN",
    "UNMATCHED",
    "_CHARTS",
    "_COL",
    "BoundedCounter",
    "BoundedMap",
    "FailingConnection",
    "LogStats",
    "MinuteSeries",
    "ProviderStats",
    "QuantileSketch",
    "RouteStats",
    "StatusItem",
    "collect",
    "render_html",
    "report",
    "report_data",
    "status_items",
    "summary_lines",
]


@click.command("report")
@click.argument(
    "logfiles",
    nargs=-1,
    type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path),
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also write a self-contained HTML page with charts to this path.",
)
@click.option(
    "--top",
    type=click.IntRange(min=1, max=10_000),
    default=10,
    show_default=True,
    help="Rows shown in the per-route, error-code and failing-connection tables.",
)
def report(logfiles: tuple[Path, ...], html_path: Path | None, top: int) -> None:
    """Summarise freshtoken JSON logs: refreshes, scan health, API, failing connections.

    Reads LOGFILE... (plain or gzip; `-` or nothing: stdin) in one pass with flat memory and prints
    the views of the on-call dashboard. Lines that are not freshtoken JSON are counted and
    skipped.
    """
    paths = logfiles or (Path("-"),)
    with _progress_bar(paths) as bar:
        stats = collect(paths, progress=None if bar.disable else bar)
    for line in summary_lines(stats, top):
        click.echo(line)
    if html_path is not None:
        try:
            html_path.write_text(render_html(stats, top), encoding="utf-8")
        except OSError as exc:
            raise click.FileError(str(html_path), hint=exc.strerror or str(exc)) from exc
        click.echo(f"\nHTML report written to {html_path}", err=True)
