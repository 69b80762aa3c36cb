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

import base64
import bisect
import contextlib
import datetime as dt
import gzip
import hashlib
import html
import json
import math
import re
import sys
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

import click
import orjson

from freshtoken.refresh.service import OUTCOMES, TRIGGERS

RELATIVE_ACCURACY = 0.01
MAX_KEYS = 200
MAX_BUCKETS = 1440
MAX_FAILING = 10_000
# Latest success per connection, so that "latest attempt failed" is decided by timestamp
# whatever order the files come in (least recently succeeding evicted first).
MAX_LAST_OK = 50_000
MAX_LINE_BYTES = 1 << 20
PROGRESS_MIN_BYTES = 8 << 20
OTHER = "(other)"
UNKNOWN = "(unknown)"
UNMATCHED = "(unmatched)"
# Proactive margin histogram (seconds left before expiry at a successful refresh).
MARGIN_EDGES = (0.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 3600.0)
MARGIN_LABELS = (
    "expired",
    "0-30s",
    "30s-1m",
    "1-2m",
    "2-5m",
    "5-10m",
    "10-15m",
    "15-20m",
    "20-30m",
    "30-60m",
    ">=60m",
)
# Per-minute columns: (name, how buckets merge).
SERIES_COLUMNS = (
    *((f"refresh_{o}", "sum") for o in OUTCOMES),
    ("refresh_other", "sum"),
    ("on_read_valid", "sum"),
    ("expired_at_read", "sum"),
    ("refresh_ms_max", "max"),
    ("scans", "sum"),
    ("due_max", "max"),
    ("enqueued", "sum"),
    ("overdue_max", "max"),
    ("api_ok", "sum"),
    ("api_4xx", "sum"),
    ("api_5xx", "sum"),
)
_COL = {name: i for i, (name, _) in enumerate(SERIES_COLUMNS)}
V = TypeVar("V")


# -- bounded building blocks -------------------------------------------------------------------


class QuantileSketch:
    """Streaming quantiles in bounded memory with a relative-error guarantee (DDSketch-style).

    Bucket ``i`` counts the values whose magnitude lies in ``(g**(i-1), g**i]`` with
    ``g = (1 + a) / (1 - a)``; reporting ``2 * g**i / (g + 1)`` for it is within ``a * |x|`` of
    every value in the bucket. The rank is exact (nearest rank), so a reported quantile is within
    ``a`` (1 %) relative of the true sample value of that rank; the minimum and maximum are
    exact. Magnitudes below ``floor`` count as 0 (absolute error < ``floor``); above ``ceiling``
    they are clamped. Memory: at most ``2 * ln(ceiling / floor) / ln(g)`` buckets (about 2,300 for
    the defaults), whatever the count.
    """

    __slots__ = (
        "_inv_log_gamma",
        "ceiling",
        "count",
        "floor",
        "gamma",
        "max",
        "min",
        "neg",
        "pos",
        "total",
        "zeros",
    )

    def __init__(
        self, alpha: float = RELATIVE_ACCURACY, floor: float = 1e-3, ceiling: float = 1e9
    ) -> None:
        self.gamma = (1 + alpha) / (1 - alpha)
        self._inv_log_gamma = 1.0 / math.log(self.gamma)
        self.floor = floor
        self.ceiling = ceiling
        self.pos: dict[int, int] = {}
        self.neg: dict[int, int] = {}
        self.zeros = 0
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, x: float) -> None:
        """Count one value."""
        self.count += 1
        self.total += x
        if x < self.min:
            self.min = x
        if x > self.max:
            self.max = x
        magnitude = -x if x < 0 else x
        if magnitude < self.floor:
            self.zeros += 1
            return
        key = math.ceil(math.log(min(magnitude, self.ceiling)) * self._inv_log_gamma)
        store = self.pos if x > 0 else self.neg
        store[key] = store.get(key, 0) + 1

    def quantile(self, q: float) -> float | None:
        """The q-quantile (0 ≤ q ≤ 1, nearest rank), or None when nothing was counted."""
        if self.count == 0:
            return None
        rank = min(self.count, max(1, math.ceil(q * self.count)))
        if rank == 1:
            return self.min  # the extremes are tracked exactly
        if rank == self.count:
            return self.max
        seen = 0
        for key in sorted(self.neg, reverse=True):  # most negative first
            seen += self.neg[key]
            if seen >= rank:
                return self._clamp(-self._value(key))
        seen += self.zeros
        if seen >= rank:
            return self._clamp(0.0)
        for key in sorted(self.pos):
            seen += self.pos[key]
            if seen >= rank:
                return self._clamp(self._value(key))
        return self.max

    @property
    def mean(self) -> float | None:
        """The exact mean, or None when nothing was counted."""
        return self.total / self.count if self.count else None

    def _value(self, key: int) -> float:
        return 2.0 * self.gamma**key / (self.gamma + 1.0)

    def _clamp(self, value: float) -> float:
        return min(max(value, self.min), self.max)


class BoundedCounter:
    """Counts per key for at most ``limit`` distinct keys; further new keys count as ``(other)``."""

    __slots__ = ("counts", "limit")

    def __init__(self, limit: int = MAX_KEYS) -> None:
        self.limit = limit
        self.counts: dict[str, int] = {}

    def add(self, key: str, n: int = 1) -> None:
        """Count ``n`` occurrences of ``key``."""
        counts = self.counts
        if key in counts:
            counts[key] += n
        elif len(counts) < self.limit:
            counts[key] = n
        else:
            counts[OTHER] = counts.get(OTHER, 0) + n

    def get(self, key: str) -> int:
        """The count of ``key`` (0 when never seen)."""
        return self.counts.get(key, 0)

    def most_common(self, n: int | None = None) -> list[tuple[str, int]]:
        """Keys by descending count (ties by name)."""
        ranked = sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return ranked if n is None else ranked[:n]

    def total(self) -> int:
        """The sum of all counts."""
        return sum(self.counts.values())


class BoundedMap(Generic[V]):
    """A dict of at most ``limit`` keys built by ``factory``; later new keys share ``(other)``."""

    __slots__ = ("factory", "items", "limit")

    def __init__(self, factory: Callable[[], V], limit: int = MAX_KEYS) -> None:
        self.factory = factory
        self.limit = limit
        self.items: dict[str, V] = {}

    def __getitem__(self, key: str) -> V:
        value = self.items.get(key)
        if value is None:
            if len(self.items) >= self.limit and key != OTHER:
                return self[OTHER]
            value = self.items[key] = self.factory()
        return value


class MinuteSeries:
    """Per-minute sums and maxima of :data:`SERIES_COLUMNS` in at most ``max_buckets`` buckets.

    Buckets are keyed by ``epoch_minute // width``. When a new bucket would exceed the cap the
    width doubles and neighbouring buckets merge (sums add, maxima take the max), so memory is
    ``O(max_buckets * columns)`` for any time span, at the cost of resolution on long spans.
    """

    def __init__(self, max_buckets: int = MAX_BUCKETS) -> None:
        self.max_buckets = max_buckets
        self.width = 1
        self.buckets: dict[int, list[float]] = {}

    def row(self, minute: int) -> list[float]:
        """The bucket row for an epoch minute (created when missing)."""
        key = minute // self.width
        row = self.buckets.get(key)
        if row is None:
            while len(self.buckets) >= self.max_buckets:
                self._coarsen()
                key = minute // self.width
                row = self.buckets.get(key)
                if row is not None:
                    return row
            row = self.buckets[key] = [0.0] * len(SERIES_COLUMNS)
        return row

    def _coarsen(self) -> None:
        merged: dict[int, list[float]] = {}
        for key, row in self.buckets.items():
            target = merged.get(key // 2)
            if target is None:
                merged[key // 2] = row
                continue
            for i, (_, how) in enumerate(SERIES_COLUMNS):
                target[i] = target[i] + row[i] if how == "sum" else max(target[i], row[i])
        self.buckets = merged
        self.width *= 2


@dataclass(slots=True)
class ProviderStats:
    """token.refresh aggregates of one provider."""

    outcomes: BoundedCounter = field(default_factory=lambda: BoundedCounter(32))
    duration: QuantileSketch = field(default_factory=QuantileSketch)


@dataclass(slots=True)
class RouteStats:
    """api.request aggregates of one route template."""

    count: int = 0
    ge400: int = 0
    ge500: int = 0
    latency: QuantileSketch = field(default_factory=QuantileSketch)


@dataclass(slots=True)
class FailingConnection:
    """The latest failure of a connection whose latest attempt failed."""

    provider_config_key: str
    connection_id: str
    provider: str
    error_code: str
    error_class: str
    http_status: int | None
    last_failure: str
    log_id: str
    failures: int = 0


# -- the aggregate -----------------------------------------------------------------------------


def _num(value: Any) -> float | None:
    """A JSON number as float (bool and non-finite values are not numbers here)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
        return number if math.isfinite(number) else None
    return None


def _text(value: Any, default: str) -> str:
    return value if isinstance(value, str) and value else default


class LogStats:
    """Everything the report shows, fed one line at a time (bounded memory, see the module doc)."""

    def __init__(self) -> None:
        self.lines = 0
        self.blank = 0
        self.malformed = 0
        self.foreign = 0
        self.invalid = 0
        self.events = BoundedCounter()
        self.first_ts: str | None = None
        self.last_ts: str | None = None
        self.series = MinuteSeries()
        self._minute_prefix = ""
        self._minute_value: int | None = None
        # token.refresh
        self.refreshes = 0
        self.providers: BoundedMap[ProviderStats] = BoundedMap(ProviderStats)
        self.outcomes = BoundedCounter(32)
        self.triggers = BoundedCounter(32)
        self.on_read_outcomes = BoundedCounter(32)
        self.error_codes = BoundedCounter()
        self.duration = QuantileSketch()
        self.lock_wait = QuantileSketch()
        self.margin = QuantileSketch()
        self.margin_by_trigger: BoundedMap[QuantileSketch] = BoundedMap(QuantileSketch, 32)
        self.margin_bins = [0] * len(MARGIN_LABELS)
        self.expired_at_read = 0
        self.failing: OrderedDict[tuple[str, str], FailingConnection] = OrderedDict()
        self.failing_evicted = 0
        # Keyed by the hash of (integration, connection): a third of the memory of the tuple.
        self.last_ok: OrderedDict[int, str] = OrderedDict()
        # Lines in freshtoken's console format (FRESHTOKEN_LOG_FORMAT=console or a terminal).
        self.console = 0
        # refresh.scan
        self.scans = 0
        self.scan_due = 0
        self.scan_due_max = 0.0
        self.scan_claimed = 0
        self.scan_enqueued = 0
        self.scan_skipped = 0
        self.scan_overdue = QuantileSketch()
        self.scan_duration = QuantileSketch()
        self.scan_max_gap: float | None = None
        self._last_scan: dt.datetime | None = None
        self.last_scan_ts: str | None = None
        # api.request
        self.requests = 0
        self.api_ge400 = 0
        self.api_ge500 = 0
        self.statuses = BoundedCounter(64)
        self.routes: BoundedMap[RouteStats] = BoundedMap(RouteStats)
        self.api_latency = QuantileSketch()
        # webhook.delivery
        self.webhook_attempts = 0
        self.webhook_outcomes = BoundedCounter(32)
        self.webhook_failed = BoundedCounter()
        self._handlers: dict[str, Callable[[dict[str, Any], list[float] | None], bool]] = {
            "token.refresh": self._token_refresh,
            "refresh.scan": self._refresh_scan,
            "api.request": self._api_request,
            "webhook.delivery": self._webhook_delivery,
        }

    # -- input ---------------------------------------------------------------------------------

    def feed(self, line: bytes | None) -> None:
        """Account for one raw line (``None``: a line too long to hold, counted as malformed)."""
        self.lines += 1
        if line is None:
            self.malformed += 1
            return
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            obj = _salvage(line)
            if obj is None:
                if line.isspace() or not line:
                    self.blank += 1
                else:
                    self.malformed += 1
                    if _CONSOLE_LINE.match(line):
                        self.console += 1
                return
        if not isinstance(obj, dict):
            self.malformed += 1
            return
        event = obj.get("event")
        if not isinstance(event, str):
            inner = _docker_envelope(obj)
            if inner is None:
                self.foreign += 1
                return
            obj = inner
            event = obj["event"]
        self.events.add(event)
        ts = obj.get("timestamp")
        if isinstance(ts, str):
            if self.first_ts is None or ts < self.first_ts:
                self.first_ts = ts
            if self.last_ts is None or ts > self.last_ts:
                self.last_ts = ts
        handler = self._handlers.get(event)
        if handler is None:
            return
        minute = self._minute(ts) if isinstance(ts, str) else None
        row = self.series.row(minute) if minute is not None else None
        if not handler(obj, row):
            self.invalid += 1

    def _minute(self, ts: str) -> int | None:
        prefix = ts[:16]
        if prefix == self._minute_prefix:
            return self._minute_value
        when = _parse_ts(ts)
        value = int(when.timestamp() // 60) if when is not None else None
        if ts.endswith("Z"):  # the prefix alone determines the minute only without an offset
            self._minute_prefix, self._minute_value = prefix, value
        return value

    # -- events --------------------------------------------------------------------------------

    def _token_refresh(self, o: dict[str, Any], row: list[float] | None) -> bool:
        outcome = o.get("outcome")
        trigger = o.get("trigger")
        if not isinstance(outcome, str) or not isinstance(trigger, str):
            return False
        provider = _text(o.get("provider"), UNKNOWN)
        self.refreshes += 1
        stats = self.providers[provider]
        stats.outcomes.add(outcome)
        self.outcomes.add(outcome)
        self.triggers.add(trigger)
        duration = _num(o.get("duration_ms"))
        if duration is not None:
            stats.duration.add(duration)
            self.duration.add(duration)
        lock_wait = _num(o.get("lock_wait_ms"))
        if lock_wait is not None:
            self.lock_wait.add(lock_wait)
        left = _num(o.get("seconds_to_expiry"))
        if outcome == "success" and left is not None:
            self.margin.add(left)
            self.margin_by_trigger[trigger].add(left)
            self.margin_bins[0 if left < 0 else bisect.bisect_right(MARGIN_EDGES, left)] += 1
        expired_read = False
        if trigger == "on_read":
            self.on_read_outcomes.add(outcome)
            if left is not None and left < 0:
                self.expired_at_read += 1
                expired_read = True
        if outcome == "failed":
            self.error_codes.add(
                f"{_text(o.get('error_code'), UNKNOWN)} ({_text(o.get('error_class'), '-')})"
            )
            self._failed(o, provider)
        elif outcome in ("success", "skipped_fresh"):
            self._succeeded(o)
        if row is not None:
            column = _COL.get(f"refresh_{outcome}", _COL["refresh_other"])
            row[column] += 1
            if expired_read:
                row[_COL["expired_at_read"]] += 1
            elif trigger == "on_read":
                row[_COL["on_read_valid"]] += 1
            if duration is not None and duration > row[_COL["refresh_ms_max"]]:
                row[_COL["refresh_ms_max"]] = duration
        return True

    def _succeeded(self, o: dict[str, Any]) -> None:
        key = _connection_key(o)
        ts = _text(o.get("timestamp"), "")
        hashed = hash(key)
        seen = self.last_ok.get(hashed)
        if seen is None or _not_before(ts, seen):
            self.last_ok[hashed] = ts
            self.last_ok.move_to_end(hashed)
            if len(self.last_ok) > MAX_LAST_OK:
                self.last_ok.popitem(last=False)
        entry = self.failing.get(key)
        if entry is not None and _not_before(ts, entry.last_failure):
            del self.failing[key]

    def _failed(self, o: dict[str, Any], provider: str) -> None:
        key = _connection_key(o)
        ts = _text(o.get("timestamp"), "")
        ok = self.last_ok.get(hash(key))
        if ok is not None and ts and ok and not _not_before(ts, ok):
            return  # a later attempt (read earlier, from another file) succeeded
        entry = self.failing.get(key)
        status = o.get("http_status")
        if entry is not None and not _not_before(ts, entry.last_failure):
            entry.failures += 1  # an older failure: counted, but the latest stays the latest
            return
        if entry is None:
            entry = FailingConnection(
                provider_config_key=key[0],
                connection_id=key[1],
                provider=provider,
                error_code="",
                error_class="",
                http_status=None,
                last_failure="",
                log_id="",
            )
            self.failing[key] = entry
            if len(self.failing) > MAX_FAILING:
                self.failing.popitem(last=False)
                self.failing_evicted += 1
        else:
            self.failing.move_to_end(key)
        entry.failures += 1
        entry.error_code = _text(o.get("error_code"), UNKNOWN)
        entry.error_class = _text(o.get("error_class"), "-")
        entry.http_status = (
            None if isinstance(status, bool) or not isinstance(status, int) else status
        )
        entry.last_failure = _text(o.get("timestamp"), "")
        entry.log_id = _text(o.get("log_id"), "")

    def _refresh_scan(self, o: dict[str, Any], row: list[float] | None) -> bool:
        due = _num(o.get("due"))
        enqueued = _num(o.get("enqueued"))
        if due is None or enqueued is None:
            return False
        self.scans += 1
        self.scan_due += int(due)
        self.scan_due_max = max(self.scan_due_max, due)
        self.scan_enqueued += int(enqueued)
        self.scan_claimed += int(_num(o.get("claimed")) or 0)
        self.scan_skipped += int(_num(o.get("skipped")) or 0)
        overdue = _num(o.get("oldest_overdue_seconds"))
        if overdue is not None:
            self.scan_overdue.add(overdue)
        duration = _num(o.get("duration_ms"))
        if duration is not None:
            self.scan_duration.add(duration)
        ts = o.get("timestamp")
        when = _parse_ts(ts) if isinstance(ts, str) else None
        if when is not None:
            if self._last_scan is not None and when > self._last_scan:
                gap = (when - self._last_scan).total_seconds()
                self.scan_max_gap = max(self.scan_max_gap or 0.0, gap)
            if self._last_scan is None or when > self._last_scan:
                self._last_scan = when
                self.last_scan_ts = str(ts)
        if row is not None:
            row[_COL["scans"]] += 1
            row[_COL["enqueued"]] += enqueued
            row[_COL["due_max"]] = max(row[_COL["due_max"]], due)
            if overdue is not None:
                row[_COL["overdue_max"]] = max(row[_COL["overdue_max"]], overdue)
        return True

    def _api_request(self, o: dict[str, Any], row: list[float] | None) -> bool:
        status = o.get("status")
        if not isinstance(status, int) or isinstance(status, bool):
            return False
        route = _text(o.get("route"), UNMATCHED)
        method = _text(o.get("method"), "?")
        self.requests += 1
        self.statuses.add(str(status))
        stats = self.routes[f"{method} {route}"]
        stats.count += 1
        duration = _num(o.get("duration_ms"))
        if duration is not None:
            self.api_latency.add(duration)
            stats.latency.add(duration)
        column = "api_ok"
        if status >= 400:
            self.api_ge400 += 1
            stats.ge400 += 1
            column = "api_4xx"
        if status >= 500:
            self.api_ge500 += 1
            stats.ge500 += 1
            column = "api_5xx"
        if row is not None:
            row[_COL[column]] += 1
        return True

    def _webhook_delivery(self, o: dict[str, Any], _row: list[float] | None) -> bool:
        outcome = o.get("outcome")
        if not isinstance(outcome, str) or not outcome:
            return False
        self.webhook_attempts += 1
        self.webhook_outcomes.add(outcome)
        if outcome in ("failed", "refused"):
            operation = _text(o.get("operation"), "?")
            self.webhook_failed.add(f"{operation} -> {_text(o.get('url_host'), '?')}")
        return True

    # -- derived -------------------------------------------------------------------------------

    def span_seconds(self) -> float | None:
        """Seconds between the first and last timestamp seen (None without two timestamps)."""
        first = _parse_ts(self.first_ts) if self.first_ts else None
        last = _parse_ts(self.last_ts) if self.last_ts else None
        if first is None or last is None:
            return None
        return (last - first).total_seconds()

    def failing_connections(self) -> list[FailingConnection]:
        """Connections whose latest attempt failed, most recent failure first."""
        return sorted(self.failing.values(), key=lambda f: f.last_failure, reverse=True)


_CONSOLE_LINE = re.compile(rb"^\d\d:\d\d:\d\d (debug|info|warning|error|critical) ")


def _not_before(ts: str, other: str) -> bool:
    """True if ``ts`` is at or after ``other``; a missing timestamp counts as newest.

    (Without timestamps the order of the lines decides, as it always did.)
    """
    if not ts or not other:
        return True
    if ts.endswith("Z") and other.endswith("Z") and len(ts) == len(other):
        return ts >= other  # same ISO shape: the strings order like the instants
    a, b = _parse_ts(ts), _parse_ts(other)
    if a is None or b is None:
        return True
    return a >= b


def _connection_key(o: dict[str, Any]) -> tuple[str, str]:
    connection = o.get("connection_id")
    if not isinstance(connection, str) or not connection:
        connection = f"pk:{o.get('connection_pk')}"
    return _text(o.get("provider_config_key"), UNKNOWN), connection


def _parse_ts(ts: str) -> dt.datetime | None:
    try:
        when = dt.datetime.fromisoformat(ts.replace("Z", "+00:00", 1) if ts.endswith("Z") else ts)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _salvage(line: bytes) -> Any:
    """A JSON object after a ``docker compose logs`` prefix (``api-1  | {...}``), else None."""
    start = line.find(b"{")
    if start <= 0:
        return None
    try:
        return orjson.loads(line[start:])
    except orjson.JSONDecodeError:
        return None


def _docker_envelope(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The freshtoken line inside Docker's json-file envelope (``{"log": ...}``), else None."""
    inner_text = obj.get("log")
    if not isinstance(inner_text, str) or "stream" not in obj:
        return None
    try:
        inner = orjson.loads(inner_text)
    except orjson.JSONDecodeError:
        return None
    if isinstance(inner, dict) and isinstance(inner.get("event"), str):
        return inner
    return None


# -- reading -----------------------------------------------------------------------------------


@dataclass
class _Source:
    name: str
    stream: IO[bytes] | gzip.GzipFile
    raw: IO[bytes] | None  # the on-disk file (for progress by bytes read), None for stdin


def _open(path: Path) -> _Source:
    if str(path) == "-":
        stdin: IO[bytes] | None = getattr(sys.stdin, "buffer", None)
        if stdin is None:
            raise click.UsageError("no log files given and no standard input to read")
        return _Source("<stdin>", stdin, None)
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise click.FileError(str(path), hint=exc.strerror or str(exc)) from exc
    magic = raw.read(2)
    raw.seek(0)
    if magic == b"\x1f\x8b":
        return _Source(str(path), gzip.GzipFile(fileobj=raw, mode="rb"), raw)
    return _Source(str(path), raw, raw)


def _lines(stream: IO[bytes] | gzip.GzipFile) -> Iterator[bytes | None]:
    """Lines of at most MAX_LINE_BYTES; a longer line is consumed and yielded as None."""
    readline = stream.readline
    while True:
        line = readline(MAX_LINE_BYTES)
        if not line:
            return
        if len(line) == MAX_LINE_BYTES and not line.endswith(b"\n"):
            while True:
                rest = readline(MAX_LINE_BYTES)
                if not rest or rest.endswith(b"\n"):
                    break
            yield None
            continue
        yield line


def _progress_bar(paths: tuple[Path, ...]) -> Any:
    from tqdm import tqdm

    files = [p for p in paths if str(p) != "-"]
    total = 0
    for p in files:
        with contextlib.suppress(OSError):
            total += p.stat().st_size
    enabled = (
        bool(files) and len(files) == len(paths) and total >= PROGRESS_MIN_BYTES and _stderr_tty()
    )
    return tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc="reading logs",
        file=sys.stderr,
        disable=not enabled,
        leave=False,
    )


def _stderr_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def collect(paths: tuple[Path, ...], progress: Any = None) -> LogStats:
    """Stream every file (``-``: stdin) once into a :class:`LogStats`."""
    stats = LogStats()
    done = 0
    for path in paths or (Path("-"),):
        source = _open(path)
        try:
            for n, line in enumerate(_lines(source.stream), 1):
                stats.feed(line)
                if progress is not None and source.raw is not None and n & 0x3FFF == 0:
                    progress.n = done + source.raw.tell()
                    progress.refresh()
            if source.raw is not None:
                done += source.raw.tell()
                if progress is not None:
                    progress.n = done
                    progress.refresh()
        except (OSError, EOFError) as exc:  # a truncated .gz, a vanished file
            raise click.FileError(source.name, hint=str(exc)) from exc
        finally:
            if source.raw is not None:
                source.stream.close()
                source.raw.close()
    return stats


# -- terminal summary --------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if abs(value) >= 10_000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


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
    """The terminal report, line by line."""
    out: list[str] = []
    span = stats.span_seconds()
    minutes = span / 60 if span else None
    rate_minutes = minutes if minutes and minutes >= 1 else None  # no per-minute rate below 1 min
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

    # token.refresh
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

    # refresh.scan
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

    # api.request
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

    # webhook.delivery
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

    # failing connections
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
    notable = [(k, v) for k, v in stats.events.most_common() if k not in stats._handlers][:top]
    if notable:
        out.append("")
        out.append("Other events: " + ", ".join(f"{k} {v:,}" for k, v in notable))
    return out


# -- HTML --------------------------------------------------------------------------------------


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


_CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1d2430;
background:#f6f7f9}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}
.status{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:10px;
margin-top:14px}
.tile{background:#fff;border:1px solid #dde1e7;border-left:6px solid #90a4ae;border-radius:6px;
padding:8px 12px}
.tile b{display:block;font-size:20px}.tile span{font-size:12px;color:#5b6575}
.tile.ok{border-left-color:#2e7d32}.tile.warn{border-left-color:#ef6c00}
.tile.bad{border-left-color:#c62828}
.verdict{font-weight:600;margin-top:10px}.verdict.ok{color:#2e7d32}.verdict.warn{color:#b35200}
.verdict.bad{color:#c62828}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:16px}
.card{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:12px 14px;min-width:0}
.card h3{font-size:14px;margin:0 0 6px}.muted{color:#5b6575;font-size:12px}
svg{width:100%;height:auto;display:block}svg text{font-size:12px;fill:#3d4656}
svg text.unit{font-weight:600;fill:#1d2430}
.legend span{display:inline-block;margin-right:12px;font-size:12px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:-1px}
table{border-collapse:collapse;background:#fff;font-size:12px;margin:4px 0 12px}
th,td{border:1px solid #dde1e7;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#eef1f5}
td.text{text-align:left}.scroll{overflow-x:auto;max-width:100%}
pre{background:#fff;border:1px solid #dde1e7;padding:10px;overflow:auto;font-size:12px}
"""

# The charts: plain DOM + SVG, no library. Each chart sets data-drawn="true" and data-marks, and
# names its one unit (data-unit and a title on the y axis). Axis labels are measured once drawn
# and a time label that would touch its neighbour is left out, so none overlap at any width.
_JS = r"""
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var DATA = JSON.parse(document.getElementById("report-data").textContent);
  var COLORS = ["#2e7d32", "#c62828", "#90a4ae", "#ef6c00", "#6a1b9a", "#455a64",
                "#1565c0", "#00838f", "#ad1457", "#9e9d24"];
  var W = 640, H = 256, M = {l: 64, r: 14, t: 34, b: 30}, GAP = 8;
  var drawn = 0;

  function el(name, attrs, parent) {
    var node = document.createElementNS(NS, name);
    for (var k in attrs) { node.setAttribute(k, attrs[k]); }
    if (parent) { parent.appendChild(node); }
    return node;
  }
  function text(parent, x, y, s, anchor, cls) {
    var t = el("text", {x: x, y: y, "text-anchor": anchor || "middle"}, parent);
    if (cls) { t.setAttribute("class", cls); }
    t.textContent = s;
    return t;
  }
  function nice(max) {
    if (!(max > 0)) { return 1; }
    var p = Math.pow(10, Math.floor(Math.log10(max))), f = max / p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
  }
  function fmt(v) {
    if (Math.abs(v) >= 1000) { return Math.round(v).toLocaleString("en-US"); }
    return String(Math.round(v * 100) / 100);
  }
  var multiDay = DATA.minutes.length > 0 &&
    Math.floor(DATA.minutes[0] / 1440) !== Math.floor(DATA.minutes[DATA.minutes.length - 1] / 1440);
  function hhmm(minute) {
    var iso = new Date(minute * 60000).toISOString();
    return multiDay ? iso.slice(5, 16).replace("T", " ") : iso.slice(11, 16);
  }
  function svgFor(id, height, unit) {
    var card = document.getElementById(id);
    var svg = el("svg", {viewBox: "0 0 " + W + " " + height, role: "img",
      "data-unit": unit}, card);
    text(svg, 4, 14, unit, "start", "unit");
    return {card: card, svg: svg};
  }
  function frame(id, ymax, unit) {
    var f = svgFor(id, H, unit);
    var top = nice(ymax);
    f.y = function (v) { return M.t + (H - M.t - M.b) * (top - v) / top; };
    for (var i = 0; i <= 4; i++) {
      var v = top * i / 4;
      el("line", {x1: M.l, x2: W - M.r, y1: f.y(v), y2: f.y(v), stroke: "#e6e9ee"}, f.svg);
      text(f.svg, M.l - 6, f.y(v) + 4, fmt(v), "end", "ylabel");
    }
    return f;
  }
  function legend(card, names, colors) {
    var box = document.createElement("div");
    box.className = "legend";
    names.forEach(function (name, i) {
      var span = document.createElement("span"), sw = document.createElement("i");
      sw.style.background = colors[i % colors.length];
      span.appendChild(sw);
      span.appendChild(document.createTextNode(name));
      box.appendChild(span);
    });
    card.appendChild(box);
  }
  function finish(f, marks) {
    if (!marks) { text(f.svg, W / 2, f.svg.viewBox.baseVal.height / 2, "no data"); }
    f.svg.setAttribute("data-drawn", "true");
    f.svg.setAttribute("data-marks", String(marks));
    drawn += 1;
  }
  function xscale(minutes) {
    var w = DATA.width_minutes, lo = minutes[0], hi = minutes[minutes.length - 1] + w;
    var span = Math.max(hi - lo, w);
    var band = (W - M.l - M.r) * w / span;
    return {x: function (m) { return M.l + (W - M.l - M.r) * (m - lo) / span; }, band: band};
  }
  // Bottom labels, measured: a label that would come closer than GAP to the one before (or
  // stick out of the plot) is removed, so the kept ones never overlap whatever the width.
  function bottomLabels(f, items) {
    var lastRight = -Infinity;
    items.forEach(function (it) {
      var t = text(f.svg, it.x, H - 10, it.label, "middle", "xlabel");
      var w = t.getComputedTextLength();
      var left = it.x - w / 2, right = it.x + w / 2;
      if (left < lastRight + GAP || left < M.l - 30 || right > W) {
        f.svg.removeChild(t);
        return;
      }
      if (it.title) { el("title", {}, t).textContent = it.title; }
      lastRight = right;
    });
  }
  function timeAxis(f, minutes, xs) {
    bottomLabels(f, minutes.map(function (m) {
      return {x: xs.x(m) + xs.band / 2, label: hhmm(m)};
    }));
  }
  // Time series as stacked bars: one bar per bucket, per-minute values.
  function stacked(id, columns, names, colors, unit) {
    colors = colors || COLORS;
    var minutes = DATA.minutes, w = DATA.width_minutes, max = 0;
    minutes.forEach(function (_, i) {
      var s = 0;
      columns.forEach(function (c) { s += DATA.series[c][i] / w; });
      max = Math.max(max, s);
    });
    var f = frame(id, max, unit), marks = 0;
    if (minutes.length) {
      var xs = xscale(minutes), bw = Math.max(1, Math.min(xs.band - 1, 48));
      minutes.forEach(function (m, i) {
        var base = 0;
        columns.forEach(function (c, j) {
          var v = DATA.series[c][i] / w;
          if (v <= 0) { return; }
          var r = el("rect", {x: xs.x(m) + (xs.band - bw) / 2, width: bw,
            y: f.y(base + v), height: Math.max(0.5, f.y(base) - f.y(base + v)),
            fill: colors[j % colors.length]}, f.svg);
          el("title", {}, r).textContent = hhmm(m) + " " + names[j] + ": " + fmt(v) + " " + unit;
          base += v;
          marks += 1;
        });
      });
      timeAxis(f, minutes, xs);
    }
    legend(f.card, names, colors);
    finish(f, marks);
  }
  // Time series as lines, all in one unit, with an optional threshold line.
  function lines(id, columns, names, perMinute, unit, threshold) {
    var minutes = DATA.minutes, w = DATA.width_minutes, max = threshold || 0;
    var vals = columns.map(function (c) {
      return DATA.series[c].map(function (v) { return perMinute ? v / w : v; });
    });
    vals.forEach(function (vs) { vs.forEach(function (v) { max = Math.max(max, v); }); });
    var f = frame(id, max, unit), marks = 0;
    if (minutes.length) {
      var xs = xscale(minutes);
      vals.forEach(function (vs, j) {
        var d = "";
        vs.forEach(function (v, i) {
          d += (i ? "L" : "M") + (xs.x(minutes[i]) + xs.band / 2).toFixed(1) + " " +
            f.y(v).toFixed(1);
        });
        el("path", {d: d, fill: "none", stroke: COLORS[j % COLORS.length], "stroke-width": 1.6},
          f.svg);
        vs.forEach(function (v, i) {
          var c = el("circle", {cx: xs.x(minutes[i]) + xs.band / 2, cy: f.y(v), r: 2.2,
            fill: COLORS[j % COLORS.length]}, f.svg);
          el("title", {}, c).textContent = hhmm(minutes[i]) + " " + names[j] + ": " + fmt(v);
        });
        marks += 1;
      });
      if (threshold) {
        el("line", {x1: M.l, x2: W - M.r, y1: f.y(threshold), y2: f.y(threshold),
          stroke: "#c62828", "stroke-dasharray": "4 3"}, f.svg);
        text(f.svg, W - M.r - 4, f.y(threshold) - 4, "alert " + fmt(threshold), "end");
      }
      timeAxis(f, minutes, xs);
    }
    legend(f.card, names, COLORS);
    finish(f, marks);
  }
  // Percentiles per category as horizontal bars: one row per provider or route, its full name
  // on the left (the label column grows to the longest name, up to half the width).
  function horizontal(id, categories, groups, names, unit) {
    var rowH = 8 * groups.length + 12, top = M.t;
    var height = top + rowH * Math.max(1, categories.length) + 26;
    var f = svgFor(id, height, unit), marks = 0, labels = [], widest = 0;
    categories.forEach(function (cat, i) {
      var t = text(f.svg, 0, top + rowH * i + rowH / 2 + 4, cat, "end", "ylabel");
      widest = Math.max(widest, t.getComputedTextLength());
      labels.push(t);
    });
    var left = Math.min(Math.ceil(widest) + 12, W / 2);
    labels.forEach(function (t, i) {
      t.setAttribute("x", left - 8);
      var full = categories[i];
      // Longer than half the chart: shorten in the middle, keep both ends readable.
      while (t.getComputedTextLength() > left - 12 && full.length > 8) {
        var mid = Math.ceil(full.length / 2);
        full = full.slice(0, mid - 1) + full.slice(mid + 1);
        t.textContent = full.slice(0, Math.floor(full.length / 2)) + "\u2026" +
          full.slice(Math.floor(full.length / 2));
      }
      el("title", {}, t).textContent = categories[i];  // the full name on hover
    });
    var max = 0;
    groups.forEach(function (g) { g.forEach(function (v) { if (v > max) { max = v; } }); });
    var scaleMax = nice(max), plotW = W - M.r - left;
    var x = function (v) { return left + plotW * v / scaleMax; };
    var bottom = top + rowH * Math.max(1, categories.length);
    for (var k = 0; k <= 4; k++) {
      var v = scaleMax * k / 4;
      el("line", {x1: x(v), x2: x(v), y1: top, y2: bottom, stroke: "#e6e9ee"}, f.svg);
      text(f.svg, x(v), bottom + 16, fmt(v), k === 0 ? "start" : k === 4 ? "end" : "middle",
        "xlabel");
    }
    categories.forEach(function (cat, i) {
      groups.forEach(function (g, j) {
        var val = g[i];
        if (val === null || val === undefined || val <= 0) { return; }
        var r = el("rect", {x: left, y: top + rowH * i + 6 + 8 * j,
          width: Math.max(1, x(val) - left), height: 7, fill: COLORS[j % COLORS.length]}, f.svg);
        el("title", {}, r).textContent = cat + " " + names[j] + ": " + fmt(val) + " " + unit;
        marks += 1;
      });
    });
    if (names.length > 1) { legend(f.card, names, COLORS); }
    finish(f, marks);
  }

  var outcomeCols = DATA.outcomes.map(function (o) { return "refresh_" + o; });
  stacked("chart-refresh-outcomes", outcomeCols, DATA.outcomes, COLORS, "refreshes / min");
  stacked("chart-on-read", ["on_read_valid", "expired_at_read"],
    ["token still valid", "token already expired"], ["#ef6c00", "#c62828"], "refreshes / min");
  horizontal("chart-duration", DATA.duration.categories,
    [DATA.duration.p50, DATA.duration.p95, DATA.duration.p99], ["p50", "p95", "p99"], "ms");
  horizontal("chart-margin", DATA.margin.labels, [DATA.margin.counts], ["successful refreshes"],
    "successful refreshes");
  lines("chart-scan-due", ["due_max"], ["due connections (max per scan)"], false,
    "connections");
  lines("chart-scan-rate", ["scans", "enqueued"], ["scans", "refreshes enqueued"], true,
    "per minute");
  lines("chart-overdue", ["overdue_max"], ["oldest overdue"], false, "seconds", 1200);
  stacked("chart-api", ["api_ok", "api_4xx", "api_5xx"], ["< 400", "4xx", "5xx"],
    ["#2e7d32", "#ef6c00", "#c62828"], "requests / min");
  horizontal("chart-api-latency", DATA.api_latency.categories,
    [DATA.api_latency.p50, DATA.api_latency.p95, DATA.api_latency.p99], ["p50", "p95", "p99"],
    "ms");
  document.body.setAttribute("data-charts-drawn", String(drawn));
})();
"""

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
