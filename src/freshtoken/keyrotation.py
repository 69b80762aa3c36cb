"""Re-encrypt every stored secret under the current key (``freshtoken keys rotate``).

Procedure: deploy the new key as ``FRESHTOKEN_ENCRYPTION_KEY`` with the previous one in
``FRESHTOKEN_ENCRYPTION_OLD_KEYS`` (so every process can read both), then run the rotation. It works
in batches, each its own transaction, selecting only rows not yet under the current key, so an
interrupted run resumes where it stopped and no row is ever left unreadable. Connection rows are
rewritten with a compare-and-set on ``version`` so a concurrent refresh is never overwritten.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update

from freshtoken.crypto import aad_for
from freshtoken.runtime import Runtime
from freshtoken.store.models import Connection, Integration


@dataclass
class RotationReport:
    """What a rotation run did."""

    connections: int = 0
    integrations: int = 0
    skipped_concurrent: int = 0


def pending_count(runtime: Runtime) -> int:
    """How many stored secrets are not under the current key."""
    prefix = f"v1.{runtime.cipher.current_key_id}.%"
    with runtime.store() as store:
        conns = store.session.scalar(
            select(func.count())
            .select_from(Connection)
            .where(Connection.credentials_enc.is_not(None))
            .where(~Connection.credentials_enc.like(prefix))
        )
        integs = store.session.scalar(
            select(func.count())
            .select_from(Integration)
            .where(Integration.client_secret_enc.is_not(None))
            .where(~Integration.client_secret_enc.like(prefix))
        )
        customs = store.session.scalar(
            select(func.count())
            .select_from(Integration)
            .where(Integration.custom_enc.is_not(None))
            .where(~Integration.custom_enc.like(prefix))
        )
    return int(conns or 0) + int(integs or 0) + int(customs or 0)


def rotate_keys(
    runtime: Runtime, *, batch_size: int = 500, progress: Callable[[int], None] | None = None
) -> RotationReport:
    """Re-encrypt all connection credentials and integration secrets under the current key."""
    report = RotationReport()
    cipher = runtime.cipher
    prefix = f"v1.{cipher.current_key_id}.%"
    after = 0
    while True:
        with runtime.store() as store:
            rows = store.live_rows_not_under_key(cipher.current_key_id, after, batch_size)
            if not rows:
                break
            for row in rows:
                after = row.id
                assert row.credentials_enc is not None
                aad = aad_for("connections", row.id, "credentials")
                fresh = cipher.encrypt(cipher.decrypt(row.credentials_enc, aad), aad)
                result = store.session.execute(
                    update(Connection)
                    .where(Connection.id == row.id, Connection.version == row.version)
                    .values(credentials_enc=fresh)
                    .execution_options(synchronize_session=False)
                )
                if cast("CursorResult[Any]", result).rowcount == 1:
                    report.connections += 1
                else:
                    # A refresh wrote meanwhile, already under the current key.
                    report.skipped_concurrent += 1
        # Reported only once committed, so an interrupted run never overstates its progress.
        if progress:
            progress(len(rows))
    with runtime.store() as store:
        integrations = store.session.scalars(
            select(Integration)
            .where(Integration.client_secret_enc.is_not(None))
            .where(~Integration.client_secret_enc.like(prefix))
        ).all()
        for integ in integrations:
            assert integ.client_secret_enc is not None
            aad = aad_for("integrations", integ.id, "client_secret")
            integ.client_secret_enc = cipher.encrypt(
                cipher.decrypt(integ.client_secret_enc, aad), aad
            )
            report.integrations += 1
        if progress and integrations:
            progress(len(integrations))
        # GitHub App private keys (APP/CUSTOM integrations) live in their own column.
        for integ in store.session.scalars(
            select(Integration)
            .where(Integration.custom_enc.is_not(None))
            .where(~Integration.custom_enc.like(prefix))
        ).all():
            assert integ.custom_enc is not None
            aad = aad_for("integrations", integ.id, "custom")
            integ.custom_enc = cipher.encrypt(cipher.decrypt(integ.custom_enc, aad), aad)
    return report
