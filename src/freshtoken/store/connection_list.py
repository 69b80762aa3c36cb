"""``GET /connections`` in SQL: every filter, the order and the page run in the database.

The list used to load every live row (ciphertext included) and filter end user, organisation,
search and tags in Python, so each call read the whole table. Here the same filters are SQL on
both databases (JSON operators on PostgreSQL, ``json_extract``/``json_each`` on SQLite), the
page is ``LIMIT``/``OFFSET`` over the ``ix_connections_live_list`` index, and only the columns
the list shows are loaded.

Semantics kept from the Python filters (the equivalence tests compare both):

- ``search``: case-insensitive substring of the connection id, or of the end user's
  ``display_name`` or ``email`` when those are JSON strings (a number never matches).
- ``end_user_id`` / ``organization_id``: equal to ``end_user.id`` / ``end_user.organization.id``
  when those are JSON strings.
- ``tags``: every wanted ``key`` (already lower-cased) has a stored tag whose lower-cased key
  equals it and whose value is the same string.

Case folding is the database's ``lower()``: identical to Python's for ASCII text (ids are
ASCII by their pattern); non-ASCII letters in names, e-mails or tag keys fold as the database
folds them (SQLite: ASCII only), as in Nango, which uses ``ILIKE``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, bindparam, func, literal_column, or_, select, text
from sqlalchemy.orm import InstrumentedAttribute, Session, load_only
from sqlalchemy.sql.elements import BindParameter

from freshtoken.store.models import Connection

# The columns connection_list_item reads; the rest (ciphertext above all) stays in the table.
LIST_COLUMNS = (
    Connection.id,
    Connection.connection_id,
    Connection.provider_config_key,
    Connection.provider,
    Connection.auth_error_log_id,
    Connection.end_user,
    Connection.tags,
    Connection.metadata_,
    Connection.created_at,
)


@dataclass(frozen=True)
class ListQuery:
    """The filters and page of one ``GET /connections`` call (Nango's names, normalised)."""

    connection_id: str | None = None
    search: str | None = None
    integration_ids: Sequence[str] = ()
    end_user_id: str | None = None
    organization_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    limit: int = 10_000
    page: int = 0


class _Json:
    """JSON accessors for one dialect: a string at a path, a substring test, a tag match.

    Paths and keys written into SQL here are constants of this module; user input is always
    a bound parameter.
    """

    def __init__(self, dialect: str) -> None:
        self.postgres = dialect == "postgresql"

    def string_at(self, column: str, *path: str) -> ColumnElement[Any]:
        """The JSON string at ``path`` of ``connections.<column>``, NULL if absent or no string."""
        if self.postgres:
            pg_path = "'{" + ",".join(path) + "}'"
            ref = f"connections.{column}"
            return literal_column(
                f"(CASE WHEN jsonb_typeof({ref} #> {pg_path}) = 'string' "
                f"THEN {ref} #>> {pg_path} END)"
            )
        json_path = "'$." + ".".join(f'"{key}"' for key in path) + "'"
        ref = f"connections.{column}"
        return literal_column(
            f"(CASE WHEN json_type({ref}, {json_path}) = 'text' "
            f"THEN json_extract({ref}, {json_path}) END)"
        )

    def contains(
        self, value: ColumnElement[Any] | InstrumentedAttribute[str], needle: str
    ) -> ColumnElement[bool]:
        """``needle`` (lower-cased already) occurs in ``lower(value)``; NULL never matches."""
        fn = func.strpos if self.postgres else func.instr
        return fn(func.lower(value), needle) > 0

    def has_tag(self, key: str, value: str) -> ColumnElement[bool]:
        """A stored tag whose lower-cased key is ``key`` has the string value ``value``."""
        # unique=True: several tag filters in one statement get distinct parameter names.
        params: tuple[BindParameter[str], ...] = (
            bindparam("tag_key", key, unique=True),
            bindparam("tag_value", value, unique=True),
        )
        sql = _PG_HAS_TAG if self.postgres else _SQLITE_HAS_TAG
        return text(sql).bindparams(*params)  # type: ignore[return-value]


_PG_HAS_TAG = (
    "EXISTS (SELECT 1 FROM jsonb_each(CASE WHEN jsonb_typeof(connections.tags) = 'object' "
    "THEN connections.tags ELSE '{}'::jsonb END) AS tag "
    "WHERE lower(tag.key) = :tag_key AND jsonb_typeof(tag.value) = 'string' "
    "AND tag.value #>> '{}' = :tag_value)"
)
_SQLITE_HAS_TAG = (
    "EXISTS (SELECT 1 FROM json_each(connections.tags) AS tag "
    "WHERE lower(tag.key) = :tag_key AND tag.type = 'text' AND tag.value = :tag_value)"
)


def _moved_filters_have_nul(query: ListQuery) -> bool:
    """Whether a filter that used to run in Python carries a NUL character."""
    values = [query.search, query.end_user_id, query.organization_id, *query.tags.keys()]
    values += query.tags.values()
    return any(v is not None and "\x00" in v for v in values)


def list_connection_rows(session: Session, query: ListQuery) -> list[Connection]:
    """Live connections matching ``query``, newest first, one page, list columns only.

    The rows carry only :data:`LIST_COLUMNS`; reading any other attribute of them would hit
    the database, so they are for :func:`~freshtoken.api.serialize.connection_list_item`.
    """
    js = _Json(session.get_bind().dialect.name)
    if js.postgres and _moved_filters_have_nul(query):
        # PostgreSQL cannot store NUL in text or JSON strings, so nothing matches; and binding it
        # is an error. These filters ran in Python before and matched nothing: same answer.
        return []
    conditions: list[ColumnElement[bool]] = [Connection.deleted_at.is_(None)]
    if query.connection_id:
        conditions.append(Connection.connection_id == query.connection_id)
    if query.integration_ids:
        conditions.append(Connection.provider_config_key.in_(list(query.integration_ids)))
    if query.end_user_id:
        conditions.append(js.string_at("end_user", "id") == query.end_user_id)
    if query.organization_id:
        conditions.append(js.string_at("end_user", "organization", "id") == query.organization_id)
    if query.search:
        needle = query.search.lower()
        conditions.append(
            or_(
                js.contains(Connection.connection_id, needle),
                js.contains(js.string_at("end_user", "display_name"), needle),
                js.contains(js.string_at("end_user", "email"), needle),
            )
        )
    for key, value in query.tags.items():
        conditions.append(js.has_tag(key.lower(), value))
    stmt = (
        select(Connection)
        .options(load_only(*LIST_COLUMNS, raiseload=True))
        .where(*conditions)
        .order_by(Connection.created_at.desc(), Connection.id.desc())
        .limit(query.limit)
        .offset(query.page * query.limit)
    )
    return list(session.scalars(stmt))
