"""Re-encrypt every stored secret under the current key (``freshtoken keys rotate``).

Procedure: deploy the new key as ``FRESHTOKEN_ENCRYPTION_KEY`` with the previous one in
``FRESHTOKEN_ENCRYPTION_OLD_KEYS`` (so every process can read both), then run the rotation. It works
in batches, each its own transaction, selecting only rows not yet under the current key, so an
interrupted run resumes where it stopped and no row is ever left unreadable. Connection rows are
rewritten with a compare-and-set on ``version`` so a concurrent refresh is never overwritten.
Values in the older ``v1`` format (associated data without the row's binding) count as "not
under the current key", so the same run is the migration to ``v2`` (see :mod:`freshtoken.crypto`).

A row that cannot be decrypted (tampered, or under a key no process has any more) is skipped and
reported by id at the end; the rest are rotated, and the CLI exits non-zero.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from freshtoken.errors import DecryptionError
from freshtoken.logs import get_logger
from freshtoken.runtime import Runtime


@dataclass
class RotationReport:
    """What a rotation run did."""

    connections: int = 0
    integrations: int = 0
    skipped_concurrent: int = 0
    # "connection:<pk>" / "integration:<unique_key>" of rows that failed to decrypt (left as is).
    undecryptable: list[str] = field(default_factory=list)


log = get_logger("freshtoken.keyrotation")


def pending_count(runtime: Runtime) -> int:
    """How many stored secrets are not under the current key."""
    with runtime.store() as store:
        return store.count_not_under_current_key()


def rotate_keys(
    runtime: Runtime, *, batch_size: int = 500, progress: Callable[[int], None] | None = None
) -> RotationReport:
    """Re-encrypt all connection credentials and integration secrets under the current key."""
    report = RotationReport()
    cipher = runtime.cipher
    after = 0
    while True:
        with runtime.store() as store:
            rows = store.live_rows_not_under_key(cipher.current_key_id, after, batch_size)
            if not rows:
                break
            for row in rows:
                after = row.id
                assert row.credentials_enc is not None
                try:
                    # Read with whatever associated data the value was written with (v1 or v2),
                    # written back bound (v2): this is also the v1 -> v2 migration.
                    fresh = store.encrypt_credentials(row.id, store.credentials(row), row)
                except DecryptionError as exc:
                    _skip(report, f"connection:{row.id}", exc)
                    continue
                if store.rewrite_ciphertext(row, fresh):
                    report.connections += 1
                else:
                    # A refresh wrote meanwhile, already under the current key.
                    report.skipped_concurrent += 1
        # Reported only once committed, so an interrupted run never overstates its progress.
        if progress:
            progress(len(rows))
    with runtime.store() as store:
        integrations = store.integrations_not_under_current_key("client_secret")
        for integ in integrations:
            assert integ.client_secret_enc is not None
            try:
                plain = store.client_secret(integ)
            except DecryptionError as exc:
                _skip(report, f"integration:{integ.unique_key}", exc)
                continue
            store.set_client_secret(integ, plain)
            report.integrations += 1
        if progress and integrations:
            progress(len(integrations))
        # GitHub App private keys (APP/CUSTOM integrations) live in their own column.
        for integ in store.integrations_not_under_current_key("custom"):
            assert integ.custom_enc is not None
            try:
                custom = store.custom(integ)
            except DecryptionError as exc:
                _skip(report, f"integration:{integ.unique_key}:custom", exc)
                continue
            store.set_custom(integ, custom)
    return report


def _skip(report: RotationReport, row: str, exc: DecryptionError) -> None:
    # The error names the failure (authentication, unknown key id), never the ciphertext.
    report.undecryptable.append(row)
    log.error("keys.rotate.undecryptable", row=row, error=str(exc))
