"""``freshtoken report``: right numbers, robust input handling, flat memory, and HTML that draws.

The numbers are checked on a hand-made log whose answers are known, and on the real scenario's
lines (tests/ops_scenario.py). The memory test streams a generated ~200 MB log in a subprocess and
bounds the growth of its peak RSS. The HTML test renders the page of a real run in headless
Chromium (Debian's ``chromium``, installed when missing) and checks the charts were drawn.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from tests.ops_scenario import scenario_events, scenario_log
from tests.support import REQUIRE_SERVICES

from freshtoken import ops_report
from freshtoken.ops_report import (
    LogStats,
    MinuteSeries,
    QuantileSketch,
    collect,
    report,
    summary_lines,
)

CHROMIUM = "/usr/bin/chromium"
MEMORY_GROWTH_LIMIT_MB = 60


def _dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _refresh(ts: str, provider: str, outcome: str, **fields: Any) -> str:
    line: dict[str, Any] = {
        "connection_id": fields.pop("connection_id", "c-ok"),
        "connection_pk": 1,
        "provider_config_key": f"{provider}-prod",
        "provider": provider,
        "trigger": fields.pop("trigger", "scheduled"),
        "outcome": outcome,
        "error_code": None,
        "error_class": None,
        "http_status": None,
        "duration_ms": 10.0,
        "lock_wait_ms": 0.0,
        "seconds_to_expiry": 600.0,
        "new_expires_at": None,
        "rotated_refresh_token": None,
        "attempt": 1,
        "log_id": "l" * 20,
        "event": "token.refresh",
        "level": "info",
        "logger": "freshtoken.refresh",
        "timestamp": ts,
    }
    line.update(fields)
    return _dumps(line)


def _scan(ts: str, due: int, enqueued: int, overdue: float | None, skipped: int = 0) -> str:
    return _dumps(
        {
            "due": due,
            "claimed": due,
            "enqueued": enqueued,
            "skipped": skipped,
            "oldest_overdue_seconds": overdue,
            "duration_ms": 5.0,
            "pages": 1,
            "event": "refresh.scan",
            "level": "info",
            "logger": "freshtoken.scan",
            "timestamp": ts,
        }
    )


def _api(ts: str, status: int, duration: float, route: str | None = "/connections/{id}") -> str:
    return _dumps(
        {
            "method": "GET",
            "route": route,
            "status": status,
            "duration_ms": duration,
            "request_id": "r" * 32,
            "event": "api.request",
            "level": "info",
            "logger": "freshtoken.api",
            "timestamp": ts,
        }
    )


def _hand_made_lines() -> list[str]:
    """A log whose every summary number is known (see test_summary_numbers_on_a_hand_made_log)."""
    t = "2026-03-01T10:0{}:{:02d}.000000Z"
    lines = [
        # hubspot: 3 successes (10, 20, 30 ms), 1 permanent failure, 1 skipped_fresh.
        _refresh(t.format(0, 1), "hubspot", "success", duration_ms=10.0, seconds_to_expiry=600.0),
        _refresh(t.format(0, 2), "hubspot", "success", duration_ms=20.0, seconds_to_expiry=900.0),
        _refresh(
            t.format(0, 3),
            "hubspot",
            "success",
            duration_ms=30.0,
            seconds_to_expiry=-5.0,
            trigger="on_read",
        ),
        _refresh(
            t.format(1, 4),
            "hubspot",
            "failed",
            duration_ms=40.0,
            connection_id="c-revoked",
            error_code="invalid_grant",
            error_class="permanent",
            http_status=400,
            log_id="revoked-log-id-00001",
        ),
        _refresh(t.format(1, 5), "hubspot", "skipped_fresh", duration_ms=50.0),
        # google: a transient failure later cured by a success, a lock timeout, a fenced write.
        _refresh(
            t.format(1, 6),
            "google",
            "failed",
            connection_id="c-flaky",
            error_code="server_error",
            error_class="transient",
            http_status=500,
        ),
        _refresh(t.format(2, 7), "google", "success", connection_id="c-flaky"),
        _refresh(
            t.format(2, 8),
            "google",
            "lock_timeout",
            trigger="on_read",
            lock_wait_ms=8000.0,
            seconds_to_expiry=120.0,
            error_code="lock_timeout",
            error_class="transient",
        ),
        _refresh(t.format(2, 9), "google", "fenced", error_code="version_conflict"),
        # scans: 30 s apart, then a 400 s gap.
        _scan(t.format(0, 0), due=2, enqueued=2, overdue=10.0),
        _scan(t.format(0, 30), due=0, enqueued=0, overdue=None),
        _scan("2026-03-01T10:07:10.000000Z", due=5, enqueued=4, overdue=1300.0, skipped=1),
    ]
    # API: 6 x 200, 401, 404 (unmatched route), 500, 503; durations 1..10 ms.
    statuses = [200, 200, 200, 200, 200, 200, 401, 404, 500, 503]
    for i, status in enumerate(statuses):
        route = None if status == 404 else "/connections/{id}"
        lines.append(_api(t.format(3, i), status, float(i + 1), route))
    return lines


JUNK = [
    "plain text from a process that does not log JSON",
    '{"msg": "json from another program, no event"}',
    "[1, 2, 3]",
    '{"event": "token.refresh", "outcome": 5, "trigger": "scheduled"}',  # invalid field type
    '{"event": "api.req',  # truncated
    "",
]


def _write(path: Path, lines: list[str], extra: bytes = b"") -> Path:
    path.write_bytes(("\n".join(lines) + "\n").encode() + extra)
    return path


def test_summary_numbers_on_a_hand_made_log(tmp_path: Path) -> None:
    """Per-provider outcomes, failure ratio, percentiles, margin, scan and API numbers are exact."""
    stats = collect((_write(tmp_path / "hand.jsonl", _hand_made_lines()),))
    assert (stats.lines, stats.malformed, stats.foreign, stats.invalid) == (22, 0, 0, 0)
    assert stats.refreshes == 9
    hubspot = stats.providers.items["hubspot"].outcomes
    assert hubspot.counts == {"success": 3, "failed": 1, "skipped_fresh": 1}
    google = stats.providers.items["google"].outcomes
    assert google.counts == {"failed": 1, "success": 1, "lock_timeout": 1, "fenced": 1}
    assert stats.outcomes.get("failed") == 2
    duration = stats.providers.items["hubspot"].duration
    assert duration.quantile(0.5) == pytest.approx(30.0, rel=0.01)
    assert duration.quantile(0.99) == 50.0  # clamped to the exact max
    assert stats.triggers.get("on_read") == 2 and stats.expired_at_read == 1
    assert stats.margin.count == 4 and stats.margin.min == -5.0
    assert stats.margin_by_trigger.items["on_read"].quantile(0.5) == -5.0
    assert stats.margin_bins[0] == 1  # the expired one
    assert stats.lock_wait.max == 8000.0
    assert stats.error_codes.counts == {
        "invalid_grant (permanent)": 1,
        "server_error (transient)": 1,
    }
    # c-flaky recovered; only the revoked connection is still failing.
    (failing,) = stats.failing_connections()
    assert (failing.connection_id, failing.error_code, failing.error_class) == (
        "c-revoked",
        "invalid_grant",
        "permanent",
    )
    assert (failing.http_status, failing.log_id) == (400, "revoked-log-id-00001")
    assert (stats.scans, stats.scan_due, stats.scan_enqueued, stats.scan_skipped) == (3, 7, 6, 1)
    assert stats.scan_overdue.max == 1300.0
    assert stats.scan_max_gap == pytest.approx(400.0)
    assert (stats.requests, stats.api_ge500, stats.api_ge400) == (10, 2, 4)
    assert stats.routes.items["GET (unmatched)"].count == 1
    assert stats.api_latency.quantile(0.5) == pytest.approx(5.0, rel=0.01)
    assert stats.span_seconds() == pytest.approx(430.0)

    result = CliRunner().invoke(report, [str(tmp_path / "hand.jsonl")])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Token refreshes: 9 attempts, 1.26/min; failure ratio 22.2%" in out
    assert re.search(r"hubspot\s+5\s+3\s+1\s+1\s+0\s+0\s+20\.0%\s+30\.\d", out)
    assert "found already expired: 1" in out
    assert "lock timeouts 1; fenced writes 1" in out
    assert "status>=500 2 (20.0%), status>=400 4 (40.0%)" in out
    assert "longest gap between scans 400.0 s" in out
    assert "Failing connections (latest attempt failed): 1;" in out
    assert "needing re-authorisation (permanent): 1" in out
    assert re.search(r"c-revoked\s+hubspot-prod\s+hubspot\s+invalid_grant\s+permanent\s+400", out)


def test_malformed_foreign_and_oversized_lines_are_counted_not_fatal(tmp_path: Path) -> None:
    """Junk, foreign JSON, bad types, invalid UTF-8 and a 1.5 MB line are counted and skipped."""
    good = _hand_made_lines()
    oversized = b'{"event": "token.refresh", "pad": "' + b"x" * 1_500_000 + b'"}\n'
    path = _write(tmp_path / "mixed.jsonl", [*JUNK, *good], b"\xff\xfe{not utf8\n" + oversized)
    stats = collect((path,))
    assert stats.malformed == 5  # text, array, truncated, invalid UTF-8, oversized
    assert stats.foreign == 1
    assert stats.invalid == 1
    assert stats.blank == 1
    assert stats.refreshes == 9 and stats.requests == 10 and stats.scans == 3
    result = CliRunner().invoke(report, [str(path)])
    assert result.exit_code == 0, result.output
    assert "malformed 5, foreign 1, invalid 1, blank 1" in result.output


def test_stdin_and_dash_read_standard_input(tmp_path: Path) -> None:
    """With no file (or `-`) the report reads stdin and prints the same summary as for the file."""
    data = ("\n".join(_hand_made_lines()) + "\n").encode()
    path = tmp_path / "hand.jsonl"
    path.write_bytes(data)
    from_file = CliRunner().invoke(report, [str(path)])
    no_args = CliRunner().invoke(report, [], input=data)
    dash = CliRunner().invoke(report, ["-"], input=data)
    assert from_file.exit_code == no_args.exit_code == dash.exit_code == 0, no_args.output
    assert no_args.output == from_file.output == dash.output
    assert "Token refreshes: 9 attempts" in no_args.output
    empty = CliRunner().invoke(report, [], input=b"")
    assert empty.exit_code == 0 and "lines 0:" in empty.output


def test_gzip_docker_envelope_and_compose_prefix_are_unwrapped(tmp_path: Path) -> None:
    """Rotated .gz files, Docker json-file envelopes and `docker compose logs` prefixes are read."""
    lines = _hand_made_lines()
    envelope = [
        _dumps({"log": line + "\n", "stream": "stdout", "time": "2026-03-01T10:00:00Z"})
        for line in lines[:5]
    ]
    prefixed = [f"api-1  | {line}" for line in lines[5:]]
    gz = tmp_path / "worker.log.1.gz"
    gz.write_bytes(gzip.compress(("\n".join(envelope) + "\n").encode()))
    plain = _write(tmp_path / "api.jsonl", prefixed)
    stats = collect((gz, plain))
    assert (stats.malformed, stats.foreign) == (0, 0)
    assert stats.refreshes == 9 and stats.requests == 10 and stats.scans == 3


def test_missing_file_and_unwritable_html_are_clean_errors(tmp_path: Path) -> None:
    """A missing log file or an unwritable --html path is a click error, not a traceback."""
    result = CliRunner().invoke(report, [str(tmp_path / "nope.log")])
    assert result.exit_code == 2
    assert "does not exist" in result.output
    log = _write(tmp_path / "hand.jsonl", _hand_made_lines())
    result = CliRunner().invoke(report, [str(log), "--html", str(tmp_path / "no" / "dir.html")])
    assert result.exit_code == 1 and not isinstance(result.exception, OSError)
    assert "Could not open file" in result.output


def test_quantile_sketch_is_within_one_percent() -> None:
    """Sketch quantiles of skewed, signed data are within 1 % of the exact nearest-rank values."""
    rng = random.Random(5)
    values = [rng.lognormvariate(4, 1.5) for _ in range(20_000)]
    values += [-rng.uniform(1, 300) for _ in range(2_000)] + [0.0] * 100
    sketch = QuantileSketch()
    for value in values:
        sketch.add(value)
    ordered = sorted(values)
    for q in (0.0, 0.01, 0.05, 0.1, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0):
        exact = ordered[max(1, -(-int(q * 1_000_000) * len(ordered) // 1_000_000)) - 1]
        estimate = sketch.quantile(q)
        assert estimate is not None
        assert abs(estimate - exact) <= 0.01 * abs(exact) + 1e-3, (q, estimate, exact)
    buckets = len(sketch.pos) + len(sketch.neg)
    assert buckets < 1_500  # bounded by the value range, not by the 22,100 values
    assert QuantileSketch().quantile(0.5) is None


def test_minute_series_stays_within_its_bucket_bound() -> None:
    """Five days of minutes fit in MAX_BUCKETS buckets by doubling the width; sums are kept."""
    series = MinuteSeries(max_buckets=1440)
    start = 29_000_000
    column = ops_report._COL["api_ok"]
    for minute in range(start, start + 5 * 1440):
        series.row(minute)[column] += 1
    assert len(series.buckets) <= 1440
    assert series.width == 8
    assert sum(row[column] for row in series.buckets.values()) == 5 * 1440


def test_failing_connections_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past MAX_FAILING the least recently failing connection is evicted and counted."""
    monkeypatch.setattr(ops_report, "MAX_FAILING", 5)
    stats = LogStats()
    for i in range(12):
        ts = f"2026-03-01T10:00:{i:02d}.000000Z"
        stats.feed(
            _refresh(ts, "xero", "failed", connection_id=f"c{i}", error_code="timeout").encode()
        )
    assert len(stats.failing) == 5 and stats.failing_evicted == 7
    assert [f.connection_id for f in stats.failing_connections()] == [
        f"c{i}" for i in range(11, 6, -1)
    ]


def test_report_agrees_with_the_real_scenario_lines(tmp_path: Path) -> None:
    """On a real run's log the report's counts equal a direct count of the lines."""
    path = tmp_path / "scenario.log"
    path.write_text(scenario_log(), encoding="utf-8")
    stats = collect((path,))
    lines = scenario_events()
    refreshes = [line for line in lines if line["event"] == "token.refresh"]
    assert (stats.malformed, stats.foreign, stats.invalid) == (0, 0, 0)
    assert stats.refreshes == len(refreshes)
    for outcome in {line["outcome"] for line in refreshes}:
        assert stats.outcomes.get(outcome) == sum(r["outcome"] == outcome for r in refreshes)
    assert stats.requests == sum(line["event"] == "api.request" for line in lines)
    assert stats.api_ge400 == sum(
        line["event"] == "api.request" and line["status"] >= 400 for line in lines
    )
    assert stats.scans == 2
    failing = {f.connection_id for f in stats.failing_connections()}
    assert failing == {"ops-revoked", "ops-flaky"}
    deliveries = [line for line in lines if line["event"] == "webhook.delivery"]
    assert stats.webhook_attempts == len(deliveries) > 0
    for outcome in ("delivered", "retry", "failed"):
        assert stats.webhook_outcomes.get(outcome) == sum(
            d["outcome"] == outcome for d in deliveries
        ), outcome
    assert stats.webhook_failed.get("creation -> 127.0.0.1") == 1
    summary = "\n".join(summary_lines(stats, 10))
    assert f"Webhooks: {len(deliveries)} delivery attempts" in summary


# -- flat memory on a large log ---------------------------------------------------------------

_MEASURE = """
import json, resource, sys, time
from pathlib import Path
from freshtoken import ops_report


def hwm_kb():
    # Peak RSS of this process (VmHWM); resource's ru_maxrss where /proc is missing.
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


ops_report.collect((Path(sys.argv[2]),))  # warm-up: imports and first allocations
try:  # reset the peak to the current RSS (Linux >= 4.0), so growth is measured from here
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
except OSError:
    pass
base = hwm_kb()
started = time.perf_counter()
stats = ops_report.collect((Path(sys.argv[1]),))
seconds = time.perf_counter() - started
ops_report.summary_lines(stats, 10)
ops_report.render_html(stats, 10)
peak = hwm_kb()
print(json.dumps({"base_kb": base, "peak_kb": peak, "seconds": seconds, "lines": stats.lines,
                  "refreshes": stats.refreshes, "failing": len(stats.failing),
                  "evicted": stats.failing_evicted, "width": stats.series.width}))
"""


def _generate_large_log(path: Path, megabytes: int) -> int:
    """Write ~megabytes of realistic lines fast: one varied block, repeated with new ids/minutes."""
    rng = random.Random(11)
    providers = ["hubspot", "google", "salesforce", "slack", "xero", "oauth2"]
    block: list[str] = []
    for i in range(240):
        ts = f"@T@:{i % 60:02d}.{rng.randrange(10**6):06d}Z"
        if i % 8 in (1, 4, 6):
            block.append(_api(ts, rng.choice([200] * 20 + [401, 404, 500]), rng.uniform(1, 80)))
            continue
        roll = rng.random()
        outcome, code, cls = "success", None, None
        if roll > 0.9:
            outcome, code, cls = (
                "failed",
                rng.choice(["server_error", "invalid_grant"]),
                "transient",
            )
        elif roll > 0.85:
            outcome = rng.choice(["skipped_fresh", "lock_timeout", "fenced"])
        block.append(
            _refresh(
                ts,
                providers[i % len(providers)],
                outcome,
                connection_id=f"conn-@B@-{i}",
                trigger="on_read" if rng.random() < 0.03 else "scheduled",
                duration_ms=round(rng.lognormvariate(5, 0.8), 1),
                seconds_to_expiry=round(rng.uniform(-30, 1300), 1),
                error_code=code,
                error_class=cls,
                log_id=f"{rng.getrandbits(80):020x}",
            )
        )
    block.insert(10, _scan("@T@:03.000000Z", 3, 3, 420.0))
    block.insert(130, _scan("@T@:33.000000Z", 1, 1, None))
    block.insert(50, "a line that is not JSON")
    template = ("\n".join(block) + "\n").encode()
    start = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    target = megabytes * 1024 * 1024
    written = n = 0
    with path.open("wb") as out:
        while written < target:
            stamp = (start + dt.timedelta(minutes=n)).strftime("%Y-%m-%dT%H:%M").encode()
            chunk = template.replace(b"@B@", b"%d" % n).replace(b"@T@", stamp)
            out.write(chunk)
            written += len(chunk)
            n += 1
    return written


@pytest.mark.slow
def test_large_log_streams_in_flat_memory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A ~200 MB log is processed in one pass with < 60 MB peak-RSS growth (throughput printed)."""
    # .jsonl, not .log: the session leak check scans *.log files under the temporary directory.
    big = tmp_path / "big.jsonl"
    started = time.perf_counter()
    size = _generate_large_log(big, 200)
    generated = time.perf_counter() - started
    small = tmp_path / "small.jsonl"
    with big.open("rb") as src:
        small.write_bytes(src.read(1 << 20).rsplit(b"\n", 1)[0] + b"\n")
    try:
        run = subprocess.run(
            [sys.executable, "-c", _MEASURE, str(big), str(small)],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    finally:
        big.unlink()
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    growth_mb = (result["peak_kb"] - result["base_kb"]) / 1024
    throughput = size / (1024 * 1024) / result["seconds"]
    with capsys.disabled():
        sys.stdout.write(
            f"\n[ops report] {size / 1e6:.0f} MB, {result['lines']:,} lines in "
            f"{result['seconds']:.1f} s ({throughput:.0f} MB/s, "
            f"{result['lines'] / result['seconds']:,.0f} lines/s); peak RSS growth "
            f"{growth_mb:.1f} MB; generated in {generated:.1f} s\n"
        )
    assert result["lines"] > 400_000
    assert result["evicted"] > 0 and result["failing"] == ops_report.MAX_FAILING  # bound hit
    assert result["width"] >= 2  # > 1,440 minutes: the time series coarsened
    assert growth_mb < MEMORY_GROWTH_LIMIT_MB, result


# -- the HTML page in a real browser ----------------------------------------------------------


def _install_chromium() -> str | None:
    """Chromium's path, installing Debian's package when missing (root only); None on failure."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "chromium"]
    for step in ([install], [["apt-get", "update", "-q"], install]):
        for argv in step:
            done = subprocess.run(argv, env=env, capture_output=True, timeout=900, check=False)
            if done.returncode != 0:
                break
        if os.access(CHROMIUM, os.X_OK):
            return CHROMIUM
    return None


@pytest.fixture(scope="module")
def chromium() -> str:
    """Path of a headless-capable Chromium (skip, or fail with FRESHTOKEN_REQUIRE_SERVICES=1)."""
    path = _install_chromium()
    if path is None:
        if REQUIRE_SERVICES:
            pytest.fail("chromium is required (FRESHTOKEN_REQUIRE_SERVICES=1) but not installable")
        pytest.skip("chromium is not installed and could not be installed")
    return path


def _chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    argv = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(argv, capture_output=True, timeout=180, check=False)


def test_html_is_self_contained(tmp_path: Path) -> None:
    """The page loads nothing from the network: no src/href, no link tags, a strict CSP."""
    log = tmp_path / "scenario.log"
    log.write_text(scenario_log(), encoding="utf-8")
    out = tmp_path / "report.html"
    result = CliRunner().invoke(report, [str(log), "--html", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    assert not re.search(r"\s(src|href)\s*=", page)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    assert "default-src 'none'" in page and "script-src 'sha256-" in page
    assert set(re.findall(r"https?://[^\s\"'<>]+", page)) <= {"http://www.w3.org/2000/svg"}


@pytest.mark.timeout(1200)  # a first run may install chromium (apt-get update + install)
def test_html_charts_draw_in_headless_chromium(tmp_path: Path, chromium: str) -> None:
    """Chromium runs the inline script on a real run's page: every chart draws, the PNG renders."""
    log = tmp_path / "scenario.log"
    log.write_text(scenario_log(), encoding="utf-8")
    page = tmp_path / "report.html"
    result = CliRunner().invoke(report, [str(log), "--html", str(page)])
    assert result.exit_code == 0, result.output

    dumped = _chromium(chromium, tmp_path / "profile-dom", "--dump-dom", page.as_uri())
    assert dumped.returncode == 0, dumped.stderr.decode(errors="replace")[-2000:]
    dom = dumped.stdout.decode()
    assert f'data-charts-drawn="{len(ops_report._CHARTS)}"' in dom, dom[:500]
    svgs = re.findall(r"<svg[^>]*>", dom)
    assert len(svgs) == len(ops_report._CHARTS) == 9
    for svg in svgs:
        assert 'data-drawn="true"' in svg, svg
        marks = re.search(r'data-marks="(\d+)"', svg)
        assert marks and int(marks.group(1)) > 0, svg
    assert dom.count("<rect") >= 10 and dom.count("<path") >= 1

    shot = tmp_path / "report.png"
    taken = _chromium(
        chromium,
        tmp_path / "profile-shot",
        "--hide-scrollbars",
        "--window-size=1300,2000",
        f"--screenshot={shot}",
        page.as_uri(),
    )
    assert taken.returncode == 0, taken.stderr.decode(errors="replace")[-2000:]
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 20_000
