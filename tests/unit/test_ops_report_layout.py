"""The HTML report as a person sees it: headless Chromium at 1280 and 800 px wide.

A realistic hour of logs (six providers, the API's real route templates, scans every 30 s,
failing connections) is rendered; the page is measured with getBoundingClientRect: status and
failing connections come before the charts, no two axis labels overlap, route names are shown
in full and at a readable size, each chart has one unit. Screenshots are written next to the
page (and to FRESHTOKEN_REPORT_SHOTS when set, to look at them).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from tests.browser import chromium

from freshtoken.ops_report import _CHARTS, report

PROVIDERS = ["hubspot", "google", "salesforce", "slack", "xero", "microsoft"]
ROUTES = [
    ("GET", "/connections/{connectionId}"),
    ("GET", "/connection/{connectionId}"),
    ("GET", "/connections"),
    ("POST", "/connections"),
    ("POST", "/connections/{connectionId}/refresh"),
    ("PATCH", "/connections/{connectionId}/metadata"),
    ("POST", "/connections/{connectionId}/metadata"),
    ("GET", "/integrations/{uniqueKey}"),
    ("DELETE", "/connections/{connectionId}"),
    ("GET", "/health"),
]


def _line(event: str, ts: dt.datetime, **fields: Any) -> str:
    stamp = ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return json.dumps({**fields, "event": event, "level": "info", "timestamp": stamp})


def _hour_of_logs(path: Path) -> None:
    rng = random.Random(15)
    start = dt.datetime(2026, 3, 1, 10, 0, tzinfo=dt.UTC)
    lines: list[str] = []
    for minute in range(60):
        base = start + dt.timedelta(minutes=minute)
        for half in (0, 30):
            due = rng.randrange(0, 12)
            lines.append(
                _line(
                    "refresh.scan",
                    base + dt.timedelta(seconds=half),
                    due=due,
                    claimed=due,
                    enqueued=due,
                    skipped=0,
                    oldest_overdue_seconds=rng.uniform(0, 90) if due else None,
                    duration_ms=rng.uniform(2, 30),
                    pages=1,
                )
            )
        for i in range(rng.randrange(4, 14)):
            provider = PROVIDERS[i % len(PROVIDERS)]
            failed = rng.random() < 0.06
            lines.append(
                _line(
                    "token.refresh",
                    base + dt.timedelta(seconds=rng.uniform(0, 59)),
                    connection_id=f"{provider}-{rng.randrange(40)}",
                    provider_config_key=f"{provider}-prod",
                    provider=provider,
                    trigger="on_read" if rng.random() < 0.04 else "scheduled",
                    outcome="failed" if failed else "success",
                    error_code="invalid_grant" if failed else None,
                    error_class="permanent" if failed else None,
                    http_status=400 if failed else 200,
                    duration_ms=rng.lognormvariate(5, 0.7),
                    lock_wait_ms=rng.uniform(0, 3),
                    seconds_to_expiry=rng.uniform(-10, 1300),
                    log_id=f"{rng.getrandbits(80):020x}",
                )
            )
        for _ in range(rng.randrange(20, 60)):
            method, route = rng.choice(ROUTES)
            lines.append(
                _line(
                    "api.request",
                    base + dt.timedelta(seconds=rng.uniform(0, 59)),
                    method=method,
                    route=route,
                    status=rng.choice([200] * 30 + [401, 404, 424, 500]),
                    duration_ms=rng.lognormvariate(1.5, 0.8),
                    request_id=f"{rng.getrandbits(128):032x}",
                )
            )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# Runs in the page: every fact the assertions below need, measured where the person sees it.
_MEASURE = """() => {
  const box = e => { const r = e.getBoundingClientRect();
    return {left: r.left, right: r.right, top: r.top, bottom: r.bottom, width: r.width,
            height: r.height}; };
  const overlaps = (a, b) => a.left < b.right && b.left < a.right &&
                             a.top < b.bottom && b.top < a.bottom;
  const charts = [...document.querySelectorAll('.card svg')].map(svg => {
    const texts = [...svg.querySelectorAll('text')].map(t => ({text: t.firstChild.nodeValue,
      cls: t.getAttribute('class') || '', box: box(t),
      size: parseFloat(getComputedStyle(t).fontSize) * svg.getBoundingClientRect().width /
            svg.viewBox.baseVal.width}));
    const pairs = [];
    for (let i = 0; i < texts.length; i++) for (let j = i + 1; j < texts.length; j++)
      if (overlaps(texts[i].box, texts[j].box)) pairs.push([texts[i].text, texts[j].text]);
    const outside = texts.filter(t => t.box.left < svg.getBoundingClientRect().left - 1 ||
      t.box.right > svg.getBoundingClientRect().right + 1).map(t => t.text);
    return {id: svg.parentElement.id, unit: svg.getAttribute('data-unit'),
            units: texts.filter(t => t.cls === 'unit').length,
            drawn: svg.getAttribute('data-drawn'),
            marks: +svg.getAttribute('data-marks'), xlabels: texts.filter(t => t.cls === 'xlabel'),
            ylabels: texts.filter(t => t.cls === 'ylabel'), overlapping: pairs, outside};
  });
  return {charts, status: box(document.getElementById('status')),
          tiles: document.querySelectorAll('#status .tile').length,
          failing: box(document.getElementById('failing')),
          failingRows: document.querySelectorAll('#failing tr').length,
          firstChart: box(document.querySelector('.grid')),
          viewport: window.innerWidth, scrollWidth: document.documentElement.scrollWidth};
}"""


@pytest.fixture(scope="module")
def report_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A report of an hour of realistic logs, rendered to HTML."""
    where = tmp_path_factory.mktemp("report")
    log = where / "hour.jsonl"
    _hour_of_logs(log)
    page = where / "report.html"
    result = CliRunner().invoke(report, [str(log), "--html", str(page)])
    assert result.exit_code == 0, result.output
    return page


@pytest.mark.parametrize("width", [1280, 800])
def test_report_layout_is_readable(report_page: Path, width: int) -> None:
    """Status and failing connections first; no overlapping labels; full route names; one unit."""
    with chromium() as browser:
        page = browser.new_page(viewport={"width": width, "height": 1000})
        page.goto(report_page.as_uri())
        page.wait_for_function(f"document.body.dataset.chartsDrawn === '{len(_CHARTS)}'")
        facts = page.evaluate(_MEASURE)
        shot = report_page.with_name(f"report-{width}.png")
        page.screenshot(path=str(shot), full_page=True)
        if os.environ.get("FRESHTOKEN_REPORT_SHOTS"):
            shutil.copy(shot, Path(os.environ["FRESHTOKEN_REPORT_SHOTS"]) / shot.name)

    # What matters first is on top: the verdict tiles, then the failing connections.
    assert facts["tiles"] == 6
    assert facts["status"]["bottom"] <= facts["failing"]["top"] < facts["firstChart"]["top"]
    assert facts["failingRows"] > 1
    assert facts["scrollWidth"] <= facts["viewport"], "the page scrolls sideways"

    charts = {c["id"]: c for c in facts["charts"]}
    assert list(charts) == [cid for cid, _, _ in _CHARTS]
    for cid, chart in charts.items():
        assert chart["drawn"] == "true" and chart["marks"] > 0, cid
        assert chart["units"] == 1 and chart["unit"], cid  # one unit per axis, named
        assert chart["overlapping"] == [], (cid, chart["overlapping"])
        assert chart["outside"] == [], (cid, chart["outside"])
        for label in chart["xlabels"] + chart["ylabels"]:
            assert label["size"] >= 10, (cid, label["text"], label["size"])

    # Time axes keep several labels (not just the first) once overlapping ones are left out.
    assert len(charts["chart-refresh-outcomes"]["xlabels"]) >= 4
    # Every route appears in full (method and template), readable, in the latency chart.
    shown = {label["text"] for label in charts["chart-api-latency"]["ylabels"]}
    assert {f"{m} {r}" for m, r in ROUTES} <= shown, shown
