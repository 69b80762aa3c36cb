"""Equivalence cases for ``GET /connections`` in SQL against the former Python filters.

:func:`reference_list` is the filtering ``GET /connections`` did in Python before it moved
into SQL (store/connection_list.py), kept verbatim in meaning as the oracle. :func:`seed`
writes rows built to hit the edge cases: JSON values that are not strings, missing keys,
mixed-case tag keys, equal creation times (id breaks the tie), deleted rows, ``_`` and ``%``.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections.abc import Iterator
from typing import Any

from sqlalchemy.orm import Session

from freshtoken.store.connection_list import ListQuery
from freshtoken.store.models import Connection, Integration

BASE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
INTEGRATIONS = ("alpha", "beta", "gamma")

END_USERS: tuple[Any, ...] = (
    None,
    {},
    {"id": "u1", "email": "Ann@Example.com", "display_name": "Ann Acme"},
    {"id": "U1", "email": "bob@example.org", "display_name": "BOB"},
    {"id": 5, "email": 5, "display_name": 55},
    {"id": "5", "display_name": "five_5"},
    {"id": "u2", "organization": {"id": "o1", "display_name": "Org"}},
    {"id": "u3", "organization": "o1"},
    {"id": "u4", "organization": {"id": 7}},
    {"id": "u5", "organization": {"id": "7"}, "email": "x%y@acme.io"},
    {"email": None, "display_name": None, "organization": None},
)
TAGS: tuple[Any, ...] = (
    None,
    {},
    {"env": "prod"},
    {"Env": "prod"},
    {"ENV": "dev", "team": "a"},
    {"env": "prod", "team": "a"},
    {"num": 1},
    {"num": "1", "Team": "A"},
)
CONNECTION_IDS = ("acme-1", "ACME_2", "user@example.com", "five", "a_b", "x%y", "plain")


def seed(session: Session, rows: int = 90) -> None:
    """Write ``rows`` connections (some deleted) across three integrations."""
    integrations = {}
    for key in INTEGRATIONS:
        row = Integration(unique_key=key, provider="oauth2", created_at=BASE, updated_at=BASE)
        session.add(row)
        integrations[key] = row
    session.flush()
    for n in range(rows):
        key = INTEGRATIONS[n % 3]
        session.add(
            Connection(
                connection_id=f"{CONNECTION_IDS[n % len(CONNECTION_IDS)]}-{n // 7}",
                provider_config_key=key,
                provider="oauth2",
                integration_id=integrations[key].id,
                credentials_type="OAUTH2",
                credentials_enc="not-a-real-ciphertext",
                end_user=END_USERS[n % len(END_USERS)],
                tags=TAGS[(n * 5) % len(TAGS)],
                metadata_={"n": n},
                # Every fourth row shares a creation time with its neighbour: id breaks ties.
                created_at=BASE + dt.timedelta(minutes=n // 2),
                updated_at=BASE,
                deleted_at=BASE if n % 11 == 10 else None,
            )
        )
    session.flush()


def _search_matches(conn: Connection, needle: str) -> bool:
    user = conn.end_user or {}
    haystacks = (conn.connection_id, user.get("display_name"), user.get("email"))
    return any(isinstance(h, str) and needle in h.lower() for h in haystacks)


def _organization_matches(conn: Connection, organization_id: str) -> bool:
    org = (conn.end_user or {}).get("organization")
    return isinstance(org, dict) and org.get("id") == organization_id


def reference_list(session: Session, q: ListQuery) -> list[int]:
    """Ids the former Python filtering returned for ``q`` (the oracle)."""
    rows = [r for r in session.query(Connection).all() if r.deleted_at is None]
    rows.sort(key=lambda r: (r.created_at, r.id), reverse=True)
    if q.connection_id:
        rows = [r for r in rows if r.connection_id == q.connection_id]
    if q.integration_ids:
        rows = [r for r in rows if r.provider_config_key in q.integration_ids]
    if q.end_user_id:
        rows = [r for r in rows if (r.end_user or {}).get("id") == q.end_user_id]
    if q.tags:
        wanted = {k.lower(): v for k, v in q.tags.items()}
        rows = [
            r
            for r in rows
            if all(
                {k.lower(): v for k, v in (r.tags or {}).items()}.get(k) == v
                for k, v in wanted.items()
            )
        ]
    if q.search:
        needle = q.search.lower()
        rows = [r for r in rows if _search_matches(r, needle)]
    if q.organization_id:
        rows = [r for r in rows if _organization_matches(r, q.organization_id)]
    start = q.page * q.limit
    return [r.id for r in rows[start : start + q.limit]]


_CONNECTION_ID = (None, "acme-1-0", "ACME_2-3", "acme-1-1", "nope")
_SEARCH = (None, "a", "ACME", "acme", "_", "%", "@EXAMPLE", "5", "ann acme", "bob", "zzz")
_INTEGRATIONS: tuple[tuple[str, ...], ...] = ((), ("alpha",), ("beta", "gamma"), ("nope",))
_END_USER = (None, "u1", "U1", "5", "u4")
_ORG = (None, "o1", "7")
_TAG_FILTERS: tuple[dict[str, str], ...] = (
    {},
    {"env": "prod"},
    {"env": "dev"},
    {"team": "a"},
    {"env": "prod", "team": "a"},
    {"num": "1"},
    {"team": "A"},
)
_PAGES = ((10_000, 0), (1, 0), (3, 1), (7, 2), (4, 30), (2000, 1))


def cases(random_count: int = 400) -> Iterator[ListQuery]:
    """Each filter alone over its values, then ``random_count`` random combinations."""
    for value in _CONNECTION_ID:
        yield ListQuery(connection_id=value)
    for value in _SEARCH:
        yield ListQuery(search=value)
    for ids in _INTEGRATIONS:
        yield ListQuery(integration_ids=ids)
    for value in _END_USER:
        yield ListQuery(end_user_id=value)
    for value in _ORG:
        yield ListQuery(organization_id=value)
    for tags in _TAG_FILTERS:
        yield ListQuery(tags=tags)
    # NUL: PostgreSQL refuses it in a bound string; these filters used to match nothing.
    yield ListQuery(search="a\x00")
    yield ListQuery(end_user_id="\x00")
    yield ListQuery(organization_id="o\x00")
    yield ListQuery(tags={"env\x00": "prod"})
    yield ListQuery(tags={"env": "prod\x00"})
    for (limit, page), search in itertools.product(_PAGES, (None, "a")):
        yield ListQuery(search=search, limit=limit, page=page)
    rng = random.Random(11)  # fixed: a failure names a reproducible case
    for _ in range(random_count):
        limit, page = rng.choice(_PAGES)

        # Each filter present with probability 0.4, so combinations still match rows.
        def maybe(values: tuple[Any, ...], empty: Any = None) -> Any:
            return rng.choice(values) if rng.random() < 0.4 else empty

        yield ListQuery(
            connection_id=maybe(_CONNECTION_ID),
            search=maybe(_SEARCH),
            integration_ids=maybe(_INTEGRATIONS, ()),
            end_user_id=maybe(_END_USER),
            organization_id=maybe(_ORG),
            tags=maybe(_TAG_FILTERS, {}),
            limit=limit,
            page=page,
        )
