"""Portable column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, DateTime, Dialect
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in Python, stored as naive UTC.

    SQLite has no time zones and returns naive values; storing naive UTC everywhere and
    re-attaching UTC on load keeps comparisons and arithmetic identical on both databases.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        """Convert to naive UTC; refuse naive input, which would be ambiguous."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        """Re-attach UTC."""
        if value is None:
            return None
        if isinstance(value, str):  # raw SQL on SQLite can hand back strings
            value = dt.datetime.fromisoformat(value)
        moment: dt.datetime = value
        return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


# JSONB on PostgreSQL (containment queries for tags), JSON text elsewhere.
PortableJSON = JSON().with_variant(JSONB(), "postgresql")
