"""Reading the logs: one streaming pass into bounded counters, sketches and series."""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import gzip
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

from freshtoken import events
from freshtoken.events import OUTCOMES
from freshtoken.outbound import sanitize_provider_text

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
    # Log fields can hold provider-chosen text from older versions: never print escapes or
    # control characters to a terminal.
    if not isinstance(value, str) or not value:
        return default
    return sanitize_provider_text(value, limit=512) or default


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
            events.TOKEN_REFRESH: self._token_refresh,
            events.REFRESH_SCAN: self._refresh_scan,
            events.API_REQUEST: self._api_request,
            events.WEBHOOK_DELIVERY: self._webhook_delivery,
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
        entry.error_code = _text(o.get("error_code"), UNKNOWN)[:64]
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
    connection = _text(o.get("connection_id"), "")
    if not connection:
        connection = f"pk:{_text(str(o.get('connection_pk')), UNKNOWN)}"
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
