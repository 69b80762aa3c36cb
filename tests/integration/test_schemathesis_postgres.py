"""The API conforms to its own ``/openapi.json`` on PostgreSQL (schemathesis; the harness and what
it checks are described in tests/conformance.py). PostgreSQL refuses what SQLite stores (NUL in
a string used to be an error only there), hence a run of its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from freshtoken.clock import FakeClock
from freshtoken.mockprovider import MockProvider
from freshtoken.runtime import Runtime
from tests.conformance import MOCK_PROVIDER_CONFIG, check_conformance, seeded_runtime
from tests.support import make_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def static_provider() -> Iterator[MockProvider]:
    """The HTTP mock provider, rotation off (restoring the seed must not replay a spent token)."""
    with MockProvider(MOCK_PROVIDER_CONFIG) as mock:
        yield mock


@pytest.fixture
def seeded_pg_runtime(
    tmp_path: Path, clock: FakeClock, static_provider: MockProvider, pg_url: str
) -> Iterator[Runtime]:
    """The seeded runtime with the refresh engine, on a fresh PostgreSQL schema (skips when
    PostgreSQL is unreachable, fails under FRESHTOKEN_REQUIRE_SERVICES=1)."""
    with seeded_runtime(make_settings(tmp_path, pg_url), clock, static_provider) as runtime:
        yield runtime


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_api_conforms_to_its_openapi_on_postgresql(seeded_pg_runtime: Runtime) -> None:
    """Thousands of generated requests get documented, schema-valid, enveloped, non-5xx answers,
    and NUL anywhere is refused before PostgreSQL sees it."""
    check_conformance(seeded_pg_runtime, "postgresql")
