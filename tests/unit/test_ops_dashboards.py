"""ops/: the Grafana dashboard, Loki alert rules and shipping configs match what the code logs.

Every LogQL expression (dashboard panel targets and ruler rules) is tokenised and analysed: the
``event="..."`` it selects, the fields it filters on after ``| json``, the fields it unwraps and
the labels it groups by. Each must be an event and a field that a REAL run of freshtoken emitted
(tests/ops_scenario.py drives the refresh service, the scan and the API against the mock provider
and captures the JSON lines), with values the code uses. Renaming a field in the code, or a typo in
a query, fails here instead of leaving a dashboard panel silently empty or an alert mute.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.ops_scenario import scenario_events, scenario_statuses

from freshtoken.refresh.grants import PERMANENT, TRANSIENT
from freshtoken.refresh.service import OUTCOMES, TRIGGERS

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "ops"
DASHBOARD_DIR = OPS / "grafana" / "dashboards"
DATASOURCES = OPS / "grafana" / "provisioning" / "datasources" / "loki.yaml"
DASHBOARD_PROVIDERS = OPS / "grafana" / "provisioning" / "dashboards" / "dashboards.yaml"
RULES = OPS / "loki" / "rules" / "freshtoken" / "alerts.yaml"
LOKI = OPS / "loki" / "loki.yaml"
PROMTAIL = OPS / "promtail" / "promtail.yaml"
ALERTMANAGER = OPS / "alertmanager" / "alertmanager.yaml"
COMPOSE = ROOT / "docker-compose.yml"
README = OPS / "README.md"

FRESHTOKEN_SERVICES = {"api", "worker", "beat"}
OPS_SERVICES = ("loki", "promtail", "alertmanager", "grafana")
# Values the code uses for the enumerated fields (queries may only compare against these).
ALLOWED_VALUES = {
    "outcome": set(OUTCOMES),
    "trigger": set(TRIGGERS),
    "error_class": {PERMANENT, TRANSIENT},
}
SPECIAL_LABELS = {"__error__", "__error_details__"}
RANGE_OPS = {
    "count_over_time",
    "rate",
    "rate_counter",
    "bytes_over_time",
    "bytes_rate",
    "avg_over_time",
    "sum_over_time",
    "min_over_time",
    "max_over_time",
    "stdvar_over_time",
    "stddev_over_time",
    "quantile_over_time",
    "first_over_time",
    "last_over_time",
    "absent_over_time",
}
VECTOR_OPS = {"sum", "avg", "min", "max", "count", "stddev", "stdvar", "topk", "bottomk", "sort"}
GRAFANA_RANGES = {"$__auto", "$__interval", "$__range", "$__rate_interval"}
PANEL_TYPES = {"row", "timeseries", "stat", "table", "logs", "bargauge", "gauge", "text"}


# -- a small LogQL analyser ---------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|`[^`]*`)
  | (?P<range>\[[^\]]*\])
  | (?P<op>\|=|\|~|\|>|!>|!=|!~|=~|==|>=|<=|=|>|<|\||\+|-|\*|/|%|\^)
  | (?P<punct>[{}(),])
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[a-zA-Z]*)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE,
)
_DURATION = re.compile(r"(\d+(ms|s|m|h|d|w|y))+")
_COMPARE = {"=", "==", "!=", "=~", "!~", ">", ">=", "<", "<="}
_LINE_FILTERS = {"|=", "!=", "|~", "!~", "|>", "!>"}


@dataclass
class Tok:
    """One LogQL token."""

    kind: str
    text: str


@dataclass
class Filter:
    """A label filter after the parser: ``field op value``."""

    field: str
    op: str
    value: str | float


@dataclass
class Segment:
    """One log selector and its pipeline."""

    selector: list[tuple[str, str, str]] = field(default_factory=list)
    json_seen: bool = False
    filters: list[Filter] = field(default_factory=list)
    filters_before_json: list[str] = field(default_factory=list)
    unwraps: list[str] = field(default_factory=list)
    templates: list[str] = field(default_factory=list)

    @property
    def events(self) -> list[str]:
        """The ``event`` values this segment selects with equality."""
        return [str(f.value) for f in self.filters if f.field == "event" and f.op in ("=", "==")]


@dataclass
class Query:
    """What one LogQL expression uses."""

    expr: str
    segments: list[Segment]
    groupings: list[list[str]]
    ranges: list[str]
    errors: list[str]


def tokenize(expr: str) -> list[Tok]:
    """Split a LogQL expression into tokens; an unknown character is an error."""
    tokens: list[Tok] = []
    pos = 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if match is None:
            raise ValueError(f"cannot tokenise at {expr[pos : pos + 20]!r}")
        kind = match.lastgroup
        assert kind is not None
        if kind != "ws":
            tokens.append(Tok(kind, match.group()))
        pos = match.end()
    return tokens


def _unquote(text: str) -> str:
    return json.loads(text) if text.startswith('"') else text[1:-1]


def _match_parens(tokens: list[Tok]) -> tuple[dict[int, int], list[str]]:
    pairs: dict[int, int] = {}
    stack: list[tuple[str, int]] = []
    errors: list[str] = []
    for i, tok in enumerate(tokens):
        if tok.text in ("(", "{"):
            stack.append((tok.text, i))
        elif tok.text in (")", "}"):
            if not stack or stack[-1][0] != {")": "(", "}": "{"}[tok.text]:
                errors.append(f"unbalanced {tok.text!r}")
                continue
            pairs[stack.pop()[1]] = i
    errors += [f"unclosed {opener!r}" for opener, _ in stack]
    return pairs, errors


def _value(tok: Tok) -> str | float:
    if tok.kind == "string":
        return _unquote(tok.text)
    if tok.kind == "number":
        return float(re.match(r"[\d.eE+-]+", tok.text).group())  # type: ignore[union-attr]
    raise ValueError(f"not a value: {tok.text!r}")


def _pipeline(tokens: list[Tok], i: int, seg: Segment, errors: list[str]) -> int:
    """Read pipeline stages from tokens[i]; return the index after the pipeline."""
    n = len(tokens)
    while i < n:
        tok = tokens[i]
        if tok.kind == "op" and tok.text in _LINE_FILTERS and i + 1 < n:
            if tokens[i + 1].kind != "string":
                errors.append(f"line filter {tok.text} needs a string")
            i += 2
            while i + 1 < n and tokens[i].text == "or" and tokens[i + 1].kind == "string":
                i += 2
            continue
        if tok.text != "|":
            return i
        i += 1
        if i >= n:
            errors.append("pipeline ends with |")
            return i
        stage = tokens[i]
        if stage.text == "json":
            seg.json_seen = True
            i += 1
            # Optional extraction list: `| json a, b="c"`.
            while (
                i < n
                and tokens[i].kind == "ident"
                and (
                    i + 1 >= n
                    or tokens[i + 1].text in (",", "=", "|")
                    or tokens[i + 1].kind == "range"
                )
            ):
                seg.templates.append(tokens[i].text)
                i += 3 if i + 1 < n and tokens[i + 1].text == "=" else 1
                if i < n and tokens[i].text == ",":
                    i += 1
            continue
        if stage.text == "unwrap":
            i += 1
            if i + 1 < n and tokens[i + 1].text == "(":
                seg.unwraps.append(tokens[i + 2].text)
                i += 4
            else:
                seg.unwraps.append(tokens[i].text)
                i += 1
            continue
        if stage.text == "line_format":
            seg.templates += re.findall(r"\{\{\s*\.([A-Za-z_]\w*)", _unquote(tokens[i + 1].text))
            i += 2
            continue
        if stage.text in ("keep", "drop"):
            i += 1
            while i < n and tokens[i].kind == "ident":
                seg.templates.append(tokens[i].text)
                i += 1
                if i < n and tokens[i].text == ",":
                    i += 1
                else:
                    break
            continue
        if stage.text in ("logfmt", "regexp", "pattern", "unpack", "label_format", "decolorize"):
            errors.append(f"stage {stage.text!r} is not used on freshtoken's JSON lines")
            i += 1
            continue
        # A label filter expression: comparisons joined by and/or/','/parentheses.
        depth = 0
        while i < n:
            tok = tokens[i]
            if tok.text == "(":
                depth += 1
                i += 1
            elif tok.text == ")":
                if depth == 0:
                    break
                depth -= 1
                i += 1
            elif tok.text in ("and", "or", ","):
                i += 1
            elif tok.kind == "ident" and i + 2 < n and tokens[i + 1].text in _COMPARE:
                try:
                    value = _value(tokens[i + 2])
                except ValueError as exc:
                    errors.append(str(exc))
                    value = tokens[i + 2].text
                flt = Filter(tok.text, tokens[i + 1].text, value)
                if not seg.json_seen and tok.text not in SPECIAL_LABELS:
                    seg.filters_before_json.append(tok.text)
                seg.filters.append(flt)
                i += 3
            else:
                break
        if depth:
            errors.append("unbalanced parentheses in a label filter")
    return i


def analyse(expr: str) -> Query:
    """Tokenise and analyse one LogQL expression."""
    tokens = tokenize(expr)
    pairs, errors = _match_parens(tokens)
    segments: list[Segment] = []
    groupings: list[list[str]] = []
    ranges: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.text == "{":
            seg = Segment()
            end = pairs.get(i, len(tokens) - 1)
            j = i + 1
            while j < end:
                if (
                    j + 2 <= end
                    and tokens[j].kind == "ident"
                    and tokens[j + 1].text in ("=", "!=", "=~", "!~")
                    and tokens[j + 2].kind == "string"
                ):
                    seg.selector.append(
                        (tokens[j].text, tokens[j + 1].text, _unquote(tokens[j + 2].text))
                    )
                    j += 3
                elif tokens[j].text == ",":
                    j += 1
                else:
                    errors.append(f"bad stream selector near {tokens[j].text!r}")
                    break
            segments.append(seg)
            i = _pipeline(tokens, end + 1, seg, errors)
            continue
        if tok.text in ("by", "without") and i + 1 < len(tokens) and tokens[i + 1].text == "(":
            close = pairs.get(i + 1, i + 1)
            labels = [t.text for t in tokens[i + 2 : close] if t.text != ","]
            if not all(re.fullmatch(r"[A-Za-z_]\w*", label) for label in labels):
                errors.append(f"bad grouping {labels}")
            groupings.append(labels)
            i = close + 1
            continue
        if tok.kind == "range":
            inner = tok.text[1:-1].strip()
            ranges.append(inner)
            if inner not in GRAFANA_RANGES and not _DURATION.fullmatch(inner):
                errors.append(f"bad range [{inner}]")
        if tok.kind == "ident" and tok.text in RANGE_OPS:
            errors += _cardinality_errors(tokens, pairs, i)
        i += 1
    if not segments:
        errors.append("no stream selector")
    return Query(expr, segments, groupings, ranges, errors)


def _cardinality_errors(tokens: list[Tok], pairs: dict[int, int], i: int) -> list[str]:
    """A range aggregation over ``| json`` must be grouped, or it returns one series per line."""
    name = tokens[i].text
    if name == "absent_over_time" or i + 1 >= len(tokens) or tokens[i + 1].text != "(":
        return []
    close = pairs.get(i + 1)
    if close is None:
        return [f"{name}: unclosed call"]
    if close + 1 < len(tokens) and tokens[close + 1].text in ("by", "without"):
        return []  # quantile_over_time(...) by (x)
    # Enclosed by a vector aggregation: `sum(` / `sum by (x) (` / `max(` right before the call.
    if i >= 2 and tokens[i - 1].text == "(":
        before = tokens[i - 2]
        if before.text in VECTOR_OPS:
            return []
        if before.text == ")":
            opener = next((k for k, v in pairs.items() if v == i - 2), None)
            if (
                opener is not None
                and opener >= 2
                and tokens[opener - 1].text in ("by", "without")
                and tokens[opener - 2].text in VECTOR_OPS
            ):
                return []
    return [
        f"{name}(...) is neither grouped (by/without) nor inside sum/max/count/...: "
        "over `| json` every distinct line becomes a series"
    ]


# -- what a real run emits ----------------------------------------------------------------------


def _observed() -> dict[str, dict[str, set[type]]]:
    """event -> field -> the Python types its values had in the scenario's lines."""
    seen: dict[str, dict[str, set[type]]] = {}
    for line in scenario_events():
        fields = seen.setdefault(line["event"], {})
        for key, value in line.items():
            fields.setdefault(key, set()).add(type(value))
    return seen


def _observed_values() -> dict[tuple[str, str], set[Any]]:
    values: dict[tuple[str, str], set[Any]] = {}
    for line in scenario_events():
        for key in ("outcome", "trigger", "error_class", "error_code", "method", "route"):
            if key in line:
                values.setdefault((line["event"], key), set()).add(line[key])
    return values


def _norm(value: str | float) -> str:
    """A filter value as text (500.0 -> "500")."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _stream_labels() -> set[str]:
    config = yaml.safe_load(PROMTAIL.read_text(encoding="utf-8"))
    labels: set[str] = set()
    for scrape in config["scrape_configs"]:
        for relabel in scrape.get("relabel_configs", []):
            if relabel.get("action", "replace") == "replace" and "target_label" in relabel:
                labels.add(relabel["target_label"])
    return labels


def check_query(query: Query, *, stream_labels: set[str] | None = None) -> list[str]:
    """Everything wrong with one analysed expression, against the scenario's real lines."""
    observed = _observed()
    values = _observed_values()
    stream_labels = _stream_labels() if stream_labels is None else stream_labels
    problems = list(query.errors)
    events_used: set[str] = set()
    for seg in query.segments:
        for label, op, value in seg.selector:
            if label not in stream_labels:
                problems.append(f"stream label {label!r} is not set by the shipper")
            if label == "service":
                pattern = re.compile(value if op in ("=~", "!~") else re.escape(value))
                matched = {s for s in FRESHTOKEN_SERVICES if pattern.fullmatch(s)}
                if matched != FRESHTOKEN_SERVICES:
                    problems.append(
                        f"service selector {value!r} misses {FRESHTOKEN_SERVICES - matched}"
                    )
        if seg.filters_before_json:
            problems.append(f"label filter before `| json`: {seg.filters_before_json}")
        if not seg.json_seen:
            problems.append("no `| json` stage: the fields are in the JSON body")
        events = seg.events
        if len(events) != 1:
            problems.append(f"each selector must pick exactly one event, got {events}")
            continue
        (event,) = events
        events_used.add(event)
        if event not in observed:
            problems.append(f"event {event!r} is never emitted (emitted: {sorted(observed)})")
            continue
        fields = observed[event]
        for flt in seg.filters:
            if flt.field in SPECIAL_LABELS:
                if flt.value != "":
                    problems.append(f'{flt.field} must be compared with ""')
                continue
            if flt.field not in fields:
                problems.append(f"{event}: field {flt.field!r} is never emitted")
                continue
            if isinstance(flt.value, float):
                if not fields[flt.field] - {type(None)} <= {int, float}:
                    problems.append(f"{event}: {flt.field} is compared as a number but is not one")
            elif flt.field in ALLOWED_VALUES or (event, flt.field) in values:
                wanted = str(flt.value).split("|") if flt.op in ("=~", "!~") else [str(flt.value)]
                allowed = ALLOWED_VALUES.get(flt.field)
                seen = values.get((event, flt.field), set())
                for want in wanted:
                    if allowed is not None and want not in allowed:
                        problems.append(
                            f"{event}: {flt.field}={want!r} is not a value the code uses"
                        )
                    elif want not in seen and flt.field != "event":
                        problems.append(
                            f"{event}: {flt.field}={want!r} never occurred in the real run"
                        )
        for name in seg.unwraps:
            kinds = fields.get(name)
            if kinds is None:
                problems.append(f"{event}: unwrapped field {name!r} is never emitted")
            elif not (kinds - {type(None)}) or not kinds - {type(None)} <= {int, float}:
                problems.append(f"{event}: unwrapped field {name!r} is not numeric ({kinds})")
        for name in seg.templates:
            if name not in fields:
                problems.append(f"{event}: field {name!r} (json/keep/line_format) never emitted")
    for labels in query.groupings:
        for label in labels:
            if label in stream_labels:
                continue
            for event in events_used:
                if label not in observed.get(event, {}):
                    problems.append(f"{event}: grouping label {label!r} is never emitted")
    return problems


# -- collecting the expressions -----------------------------------------------------------------


def _dashboards() -> list[tuple[Path, dict[str, Any]]]:
    files = sorted(DASHBOARD_DIR.glob("*.json"))
    assert files, "no dashboard JSON in ops/grafana/dashboards"
    return [(path, json.loads(path.read_text(encoding="utf-8"))) for path in files]


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # panels inside a collapsed row


def _rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in data["groups"] for rule in group["rules"]]


def _expressions() -> list[tuple[str, str, str]]:
    """(id, expr, legend or annotation text) for every dashboard target and alert rule."""
    found: list[tuple[str, str, str]] = []
    for path, dashboard in _dashboards():
        for panel in _panels(dashboard):
            for target in panel.get("targets", []):
                found.append(
                    (
                        f"{path.stem}: {panel['title']} [{target['refId']}]",
                        target["expr"],
                        target.get("legendFormat", ""),
                    )
                )
    for rule in _rules():
        text = " ".join(str(v) for v in rule.get("annotations", {}).values())
        found.append((f"alert {rule['alert']}", rule["expr"], text))
    return found


EXPRESSIONS = _expressions()


def _datasource_uid() -> str:
    config = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))
    (loki,) = [ds for ds in config["datasources"] if ds["type"] == "loki"]
    return str(loki["uid"])


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _mounts(service: str) -> dict[str, str]:
    """container path -> host path (relative to the repo) of a service's bind mounts."""
    mounts: dict[str, str] = {}
    for volume in _compose()["services"][service].get("volumes", []):
        source, target, *mode = str(volume).split(":")
        if source.startswith("./"):
            assert mode == ["ro"], f"{service}: {volume} must be read-only"
            mounts[target] = source[2:]
    return mounts


# -- tests --------------------------------------------------------------------------------------


def test_scenario_ran_every_path_the_dashboards_chart() -> None:
    """The real run produced every outcome, the main triggers, scans and the API status codes."""
    lines = scenario_events()
    refreshes = [line for line in lines if line["event"] == "token.refresh"]
    assert {line["outcome"] for line in refreshes} == set(OUTCOMES)
    assert {"scheduled", "on_read", "forced", "manual"} <= {line["trigger"] for line in refreshes}
    assert any(line["error_class"] == PERMANENT for line in refreshes)
    assert any(line["trigger"] == "on_read" and line["seconds_to_expiry"] < 0 for line in refreshes)
    assert sum(line["event"] == "refresh.scan" for line in lines) == 2
    statuses = scenario_statuses()
    assert statuses["unauthenticated"] == 401
    assert statuses["unknown_connection"] == statuses["unknown_route"] == 404
    assert statuses["invalid_grant"] == 400 and statuses["lock_timeout"] == 424
    api = {line["status"] for line in lines if line["event"] == "api.request"}
    assert {200, 400, 401, 404, 424} <= api


@pytest.mark.parametrize(("where", "expr", "text"), EXPRESSIONS, ids=[e[0] for e in EXPRESSIONS])
def test_every_query_uses_events_and_fields_the_code_emits(
    where: str, expr: str, text: str
) -> None:
    """Each expression's event, filtered, unwrapped and grouped fields come from a real run."""
    query = analyse(expr)
    problems = check_query(query)
    grouped = {label for labels in query.groupings for label in labels}
    for name in re.findall(r"\{\{\s*([A-Za-z_]\w*)\s*\}\}", text):
        if name not in grouped:
            problems.append(f"legend uses {{{{{name}}}}} but the query does not group by it")
    for name in re.findall(r"\$labels\.([A-Za-z_]\w*)", text):
        if name not in grouped:
            problems.append(f"annotation uses $labels.{name} but the query does not group by it")
    assert not problems, f"{where}:\n  " + "\n  ".join(problems)


def test_the_checker_catches_renamed_fields_events_and_values() -> None:
    """The analysis is not vacuous: a renamed field, event, unwrap, value or label is reported."""
    good = (
        'quantile_over_time(0.95, {service=~"api|worker|beat"} |= "token.refresh" | json'
        ' | __error__="" | event="token.refresh" | outcome="success"'
        ' | unwrap duration_ms | __error__="" [5m]) by (provider)'
    )
    assert check_query(analyse(good)) == []
    broken = {
        "field": good.replace("outcome=", "result="),
        "unwrap": good.replace("unwrap duration_ms", "unwrap duration_msec"),
        "event": good.replace('event="token.refresh"', 'event="token.refreshed"'),
        "value": good.replace('outcome="success"', 'outcome="succeeded"'),
        "grouping": good.replace("by (provider)", "by (provider_name)"),
        "other event's field": good.replace("unwrap duration_ms", "unwrap due"),
        "stream label": good.replace("{service=", "{connection_id="),
        "no json": good.replace(" | json", ""),
        "ungrouped": good.replace(" by (provider)", ""),
        "bad range": good.replace("[5m]", "[5 minutes]"),
    }
    for name, expr in broken.items():
        assert check_query(analyse(expr)), f"{name} was not caught: {expr}"


def test_datasource_is_provisioned_with_the_uid_panels_use() -> None:
    """The Loki data source is provisioned with a fixed uid, pointing at the compose `loki`."""
    config = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))
    assert config["apiVersion"] == 1
    (loki,) = [ds for ds in config["datasources"] if ds["type"] == "loki"]
    assert loki["url"] == "http://loki:3100"
    assert loki["access"] == "proxy" and loki["isDefault"] is True
    loki_port = yaml.safe_load(LOKI.read_text(encoding="utf-8"))["server"]["http_listen_port"]
    assert loki["url"].endswith(f":{loki_port}")
    alertmanager = [ds for ds in config["datasources"] if ds["type"] == "alertmanager"]
    assert [ds["uid"] for ds in alertmanager] == [loki["jsonData"]["alertmanagerUid"]]


def test_dashboard_is_a_valid_grafana_dashboard() -> None:
    """Dashboard JSON shape: ids, grid, panel types, and every target on the provisioned Loki."""
    uid = _datasource_uid()
    for path, dashboard in _dashboards():
        assert isinstance(dashboard["title"], str) and dashboard["title"]
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dashboard["uid"]), path
        assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
        assert "id" not in dashboard or dashboard["id"] is None  # provisioning assigns ids
        panels = list(_panels(dashboard))
        ids = [panel["id"] for panel in panels]
        assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids)
        occupied: dict[tuple[int, int], str] = {}
        for panel in panels:
            title = panel.get("title")
            assert isinstance(title, str) and title, panel
            assert panel["type"] in PANEL_TYPES, f"{title}: unknown type {panel['type']}"
            grid = panel["gridPos"]
            assert all(isinstance(grid[k], int) for k in ("h", "w", "x", "y")), title
            assert grid["w"] >= 1 and grid["h"] >= 1 and grid["x"] + grid["w"] <= 24, title
            for x in range(grid["x"], grid["x"] + grid["w"]):
                for y in range(grid["y"], grid["y"] + grid["h"]):
                    assert (x, y) not in occupied, f"{title} overlaps {occupied[(x, y)]}"
                    occupied[(x, y)] = title
            if panel["type"] in ("row", "text"):
                continue
            assert panel["datasource"] == {"type": "loki", "uid": uid}, title
            targets = panel["targets"]
            assert targets, f"{title} has no query"
            refs = [t["refId"] for t in targets]
            assert len(refs) == len(set(refs)), title
            for target in targets:
                assert target.get("datasource", panel["datasource"]) == panel["datasource"]
                assert isinstance(target["expr"], str) and target["expr"].strip(), title
                assert target.get("queryType", "range") in ("range", "instant"), title
            if panel["type"] in ("stat", "table"):
                assert all(t["queryType"] == "instant" for t in targets), title


def test_dashboard_shows_every_view_the_issue_asks_for() -> None:
    """Refresh rate, failure ratio, durations, margin, on-read, locks, re-auth, scan and API."""
    queries = [analyse(expr) for where, expr, _ in EXPRESSIONS if not where.startswith("alert ")]

    def uses(
        event: str, *, unwrap: str | None = None, by: str | None = None, **filters: str
    ) -> bool:
        for q in queries:
            for seg in q.segments:
                if seg.events != [event]:
                    continue
                if unwrap is not None and unwrap not in seg.unwraps:
                    continue
                if by is not None and not any(by in g for g in q.groupings):
                    continue
                have = {(f.field, _norm(f.value)) for f in seg.filters}
                if all((k, v) in have for k, v in filters.items()):
                    return True
        return False

    refresh = "token.refresh"
    assert uses(refresh, by="outcome") and uses(refresh, by="provider")
    assert uses(refresh, outcome="failed", by="provider")  # failure ratio per provider
    exprs = " ".join(q.expr for q in queries)
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"quantile_over_time({quantile}, " in exprs
    assert uses(refresh, unwrap="duration_ms")
    assert uses(refresh, unwrap="seconds_to_expiry", outcome="success")
    assert uses(refresh, trigger="on_read")
    assert uses(refresh, unwrap="lock_wait_ms")
    assert uses(refresh, outcome="lock_timeout") and uses(refresh, outcome="fenced")
    assert uses(refresh, error_class="permanent", by="connection_id")
    for name in ("due", "enqueued", "oldest_overdue_seconds", "duration_ms"):
        assert uses("refresh.scan", unwrap=name), name
    assert uses("api.request", status="500") and uses("api.request", status="400")
    assert uses("api.request", unwrap="duration_ms")
    assert uses("webhook.delivery", by="outcome")
    assert uses("webhook.delivery", outcome="failed", by="operation")


def test_alert_rules_are_valid_loki_ruler_rules() -> None:
    """groups -> rules with alert, expr, for, severity label and summary/description annotations."""
    data = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    assert set(data) == {"groups"}
    names: list[str] = []
    for group in data["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"}
        assert isinstance(group["name"], str) and group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", rule["alert"])
            assert _DURATION.fullmatch(str(rule["for"])), rule["alert"]
            assert rule["labels"]["severity"] in ("page", "ticket"), rule["alert"]
            assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]
            names.append(rule["alert"])
    assert len(names) == len(set(names))
    assert len({g["name"] for g in data["groups"]}) == len(data["groups"])


def test_alert_rules_cover_the_issue() -> None:
    """Failure ratio per provider, silent scheduler, on-read rising, expired token, overdue scan."""
    rules = {rule["alert"]: rule for rule in _rules()}
    ratio = analyse(rules["FreshtokenRefreshFailureRatioHigh"]["expr"])
    assert ["provider"] in ratio.groupings
    assert any(
        f.field == "outcome" and f.value == "failed" for s in ratio.segments for f in s.filters
    )
    silent = rules["FreshtokenSchedulerSilent"]["expr"]
    assert silent.strip().startswith("absent_over_time(")
    assert analyse(silent).segments[0].events == ["refresh.scan"]
    assert analyse(silent).ranges == ["5m"]
    rising = analyse(rules["FreshtokenOnReadRefreshesRising"]["expr"])
    assert any(f.field == "trigger" and f.value == "on_read" for f in rising.segments[0].filters)
    expired = analyse(rules["FreshtokenTokenFoundExpired"]["expr"]).segments[0].filters
    assert any(f.field == "seconds_to_expiry" and f.op == "<" and f.value == 0 for f in expired)
    assert any(f.field == "trigger" and f.value == "on_read" for f in expired)
    overdue = rules["FreshtokenScanOverdue"]["expr"]
    assert analyse(overdue).segments[0].unwraps == ["oldest_overdue_seconds"]
    assert re.search(r"\)\s*by \(\)\s*>\s*1200\s*$", overdue.strip())
    webhooks = analyse(rules["FreshtokenWebhookDeliveriesFailing"]["expr"]).segments[0]
    assert webhooks.events == ["webhook.delivery"]
    assert any(f.field == "outcome" and f.value == "failed" for f in webhooks.filters)


def test_an_expired_token_alert_matches_the_real_line() -> None:
    """The real on-read refresh of an expired token matches the alert; a valid token does not."""
    rule = next(r for r in _rules() if r["alert"] == "FreshtokenTokenFoundExpired")
    (segment,) = analyse(rule["expr"]).segments

    def matches(line: dict[str, Any]) -> bool:
        for flt in segment.filters:
            if flt.field in SPECIAL_LABELS:
                continue
            value = line.get(flt.field)
            if flt.op == "<":
                if not isinstance(value, int | float) or not value < float(flt.value):
                    return False
            elif flt.op == "=" and value != flt.value:
                return False
        return True

    hits = [line for line in scenario_events() if matches(line)]
    assert hits and all(line["trigger"] == "on_read" for line in hits)
    assert {line["connection_id"] for line in hits} >= {"ops-expired"}
    assert not any(line.get("connection_id") == "ops-flaky" for line in hits)


def test_shipper_keeps_labels_low_cardinality() -> None:
    """Promtail reads api/worker/beat via Docker discovery and sets only service and container."""
    config = yaml.safe_load(PROMTAIL.read_text(encoding="utf-8"))
    (scrape,) = config["scrape_configs"]
    assert scrape["docker_sd_configs"][0]["host"] == "unix:///var/run/docker.sock"
    keep = [r for r in scrape["relabel_configs"] if r.get("action") == "keep"]
    assert keep and keep[0]["source_labels"] == [
        "__meta_docker_container_label_com_docker_compose_service"
    ]
    assert set(keep[0]["regex"].split("|")) == FRESHTOKEN_SERVICES
    service = next(r for r in scrape["relabel_configs"] if r.get("target_label") == "service")
    assert service["source_labels"] == keep[0]["source_labels"]
    assert _stream_labels() == {"service", "container"}
    stages = [next(iter(stage)) for stage in scrape.get("pipeline_stages", [])]
    assert not {"labels", "structured_metadata", "labelallow"} & set(stages), stages
    assert "static_configs" not in scrape
    (client,) = config["clients"]
    assert client["url"] == "http://loki:3100/loki/api/v1/push"
    # Loki's `| json` renames a JSON key that collides with a stream label: none may collide.
    emitted = {key for line in scenario_events() for key in line}
    assert not emitted & _stream_labels()


def test_loki_is_single_binary_on_the_filesystem_with_the_ruler_on_the_rules() -> None:
    """loki.yaml: filesystem storage, no auth (tenant `fake`), ruler reading the mounted rules."""
    config = yaml.safe_load(LOKI.read_text(encoding="utf-8"))
    assert config["auth_enabled"] is False
    assert "filesystem" in config["common"]["storage"]
    assert config["schema_config"]["configs"][0]["object_store"] == "filesystem"
    ruler = config["ruler"]
    assert ruler["storage"]["type"] == "local"
    rules_dir = ruler["storage"]["local"]["directory"]
    assert _mounts("loki")[f"{rules_dir}/fake"] == "ops/loki/rules/freshtoken"
    assert ruler["alertmanager_url"] == "http://alertmanager:9093"
    assert ruler["enable_api"] is True
    assert "alertmanager" in _compose()["services"]
    routes = yaml.safe_load(ALERTMANAGER.read_text(encoding="utf-8"))
    assert routes["route"]["receiver"] in {r["name"] for r in routes["receivers"]}


def test_compose_ops_profile_mounts_the_ops_configs_read_only() -> None:
    """loki, promtail, alertmanager and grafana run under `ops` with ops/ mounted read-only."""
    services = _compose()["services"]
    for name in OPS_SERVICES:
        service = services[name]
        assert service["profiles"] == ["ops"], name
        assert ":" in service["image"] and not service["image"].endswith(":latest"), name
        for target, source in _mounts(name).items():
            assert (ROOT / source).exists(), f"{name}: {source} does not exist"
            assert target.startswith("/"), target
        for port in service.get("ports", []):
            assert str(port).startswith(("127.0.0.1:", "${")), f"{name}: {port} is public"
    grafana = _mounts("grafana")
    providers = yaml.safe_load(DASHBOARD_PROVIDERS.read_text(encoding="utf-8"))
    (provider,) = providers["providers"]
    assert grafana[provider["options"]["path"]] == "ops/grafana/dashboards"
    assert grafana["/etc/grafana/provisioning"] == "ops/grafana/provisioning"
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert Path(home).parent.as_posix() == provider["options"]["path"]
    assert (DASHBOARD_DIR / Path(home).name).exists()
    assert _mounts("promtail")["/etc/promtail/promtail.yaml"] == "ops/promtail/promtail.yaml"
    assert "/var/run/docker.sock:/var/run/docker.sock:ro" in services["promtail"]["volumes"]
    assert _mounts("loki")["/etc/loki/loki.yaml"] == "ops/loki/loki.yaml"


def test_grafana_needs_a_password_without_blocking_the_core_stack() -> None:
    """Grafana requires its admin password at start, never via `${...:?}` (it would stop `up`)."""
    text = COMPOSE.read_text(encoding="utf-8")
    assert "${GRAFANA_ADMIN_PASSWORD:?" not in text
    grafana = _compose()["services"]["grafana"]
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "${GRAFANA_ADMIN_PASSWORD:-}"
    script = " ".join(grafana["entrypoint"])
    assert '-z "$$GF_SECURITY_ADMIN_PASSWORD"' in script and "exit 1" in script
    assert script.rstrip().endswith("exec /run.sh")
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"


def test_readme_documents_every_emitted_field_and_alert() -> None:
    """ops/README.md names every field of the three events, every alert, and how to start."""
    text = README.read_text(encoding="utf-8")
    generic = {"timestamp", "level", "event", "logger", "request_id"}
    for line in scenario_events():
        if line["event"] in ("token.refresh", "refresh.scan", "api.request", "webhook.delivery"):
            for key in set(line) - generic:
                assert f"`{key}`" in text, f"{line['event']}.{key} is not documented"
    for rule in _rules():
        assert rule["alert"] in text, f"alert {rule['alert']} is not documented"
    for needle in ("--profile ops", "GRAFANA_ADMIN_PASSWORD", "freshtoken report"):
        assert needle in text, needle
