"""The API conforms to its own ``/openapi.json`` on SQLite (schemathesis; the harness and what it
checks are described in tests/conformance.py, the PostgreSQL run is in tests/integration)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conformance import MOCK_PROVIDER_CONFIG, check_conformance, seeded_runtime
from tests.support import make_settings

from freshtoken.clock import FakeClock
from freshtoken.mockprovider import MockProvider
from freshtoken.runtime import Runtime


@pytest.fixture
def static_provider() -> Iterator[MockProvider]:
    """The HTTP mock provider, rotation off (restoring the seed must not replay a spent token)."""
    with MockProvider(MOCK_PROVIDER_CONFIG) as mock:
        yield mock


@pytest.fixture
def seeded_sqlite_runtime(
    tmp_path: Path, clock: FakeClock, static_provider: MockProvider
) -> Iterator[Runtime]:
    """The seeded runtime with the refresh engine, on a SQLite file."""
    url = f"sqlite:///{(tmp_path / 'freshtoken.db').as_posix()}"
    with seeded_runtime(make_settings(tmp_path, url), clock, static_provider) as runtime:
        yield runtime


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_api_conforms_to_its_openapi(seeded_sqlite_runtime: Runtime) -> None:
    """Thousands of generated requests get documented, schema-valid, enveloped, non-5xx answers."""
    check_conformance(seeded_sqlite_runtime, "sqlite")
