"""The read gate: how the API answers when the refresh core cannot serve credentials.

The refresh core says *why* it refuses (a :class:`~freshtoken.refresh.seam.Refusal`, raised by
the read seam or derived from a :class:`~freshtoken.refresh.service.RefreshResult`) and knows
nothing of HTTP. :data:`REFUSALS` is the one place that says what the caller then sees: the
status, the error code and the message, for the read routes (``GET /connection(s)/{id}``) and
for ``POST /connections/{id}/refresh`` alike. Every refusal carries the connection without its
credentials (``payload.connection``), with the ``log_id`` of the line that explains it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from freshtoken.api.errors import error_response
from freshtoken.api.serialize import connection_denied
from freshtoken.refresh.seam import ReadRefresher, RefreshDenied, Refusal
from freshtoken.store.models import Connection

if TYPE_CHECKING:
    from freshtoken.refresh.service import RefreshResult

MSG_EXTERNAL = (
    "The external API returned an error when trying to refresh the access token. "
    "Please try again later."
)
MSG_EXHAUSTED = "The refresh limit has been reached for this connection."
MSG_BACKOFF = "A recent refresh attempt failed. Backing off before retrying."
MSG_REAUTH = "The connection's authorization was rejected by the provider and must be renewed."
MSG_LOCK_DOWN = (
    "The lock service is unavailable, so the token cannot be refreshed safely right now."
)
MSG_LOCK = "Another refresh of this connection is in progress. Please try again shortly."
MSG_RATE = (
    "The provider's refresh rate limit is reached. Please try again in a moment "
    "(the current token, if still valid, is served on a read without force_refresh)."
)
# The refresh route's own wording (it serves no token, so nothing is said about serving one).
MSG_RATE_MANUAL = "The provider's refresh rate limit is reached. Please try again in a moment."
MSG_EXTERNAL_MANUAL = "The external API returned an error when trying to refresh the access token."


@dataclass(frozen=True)
class Answer:
    """How the API answers one refusal: status, error code and message."""

    status: int
    code: str
    message: str
    # POST /connections/{id}/refresh words a few refusals differently; None: as a read does.
    manual_message: str | None = None

    def message_for(self, *, manual: bool) -> str:
        """The message for a read (``manual=False``) or for the refresh route."""
        return self.manual_message if manual and self.manual_message else self.message


# The one table: every refusal of the refresh core and how the API answers it. 424 when
# freshtoken declined to try (or another refresh holds the lock), 400 when the refresh was tried
# and failed, 429 when the provider's rate limit left no slot, 503 when the lock service is down
# (refreshing without the lock could spend a rotating refresh token twice).
REFUSALS: Final[Mapping[Refusal, Answer]] = MappingProxyType(
    {
        Refusal.EXHAUSTED: Answer(424, "invalid_credentials", MSG_EXHAUSTED),
        Refusal.NEEDS_REAUTH: Answer(424, "invalid_credentials", MSG_REAUTH),
        Refusal.COOLDOWN: Answer(424, "invalid_credentials", MSG_BACKOFF),
        Refusal.LOCK_TIMEOUT: Answer(424, "invalid_credentials", MSG_LOCK),
        Refusal.RATE_LIMITED: Answer(429, "rate_limited", MSG_RATE, MSG_RATE_MANUAL),
        Refusal.LOCK_UNAVAILABLE: Answer(503, "lock_unavailable", MSG_LOCK_DOWN),
        Refusal.PROVIDER_REJECTED: Answer(
            400, "invalid_credentials", MSG_EXTERNAL, MSG_EXTERNAL_MANUAL
        ),
        Refusal.FAILED: Answer(400, "invalid_credentials", MSG_EXTERNAL, MSG_EXTERNAL_MANUAL),
    }
)


# -- the read routes ----------------------------------------------------------------------------


async def refresh_for_read(
    refresher: ReadRefresher, conn: Connection, credentials: dict[str, Any], force: bool
) -> tuple[Connection, dict[str, Any]]:
    """Await the refresher's async seam; a sync-only refresher (a plugin, a fake) gets a thread.

    Raises :class:`RefreshDenied` when nothing can be served (answer it with :func:`refused_read`).
    """
    seam = getattr(refresher, "arefresh_for_read", None)
    if seam is not None:
        result: tuple[Connection, dict[str, Any]] = await seam(conn, credentials, force=force)
        return result
    return await run_in_threadpool(refresher.refresh_for_read, conn, credentials, force=force)


def refused_read(denied: RefreshDenied, read: Connection) -> Response:
    """The read routes' answer to a refusal; shows the row the refusal carries, else ``read``."""
    answer = REFUSALS[denied.reason]
    shown = denied.connection if denied.connection is not None else read
    return error_response(
        answer.status,
        answer.code,
        answer.message_for(manual=False),
        payload={"connection": connection_denied(shown, denied.log_id)},
    )


# -- the refresh route --------------------------------------------------------------------------


def manual_refusal(result: RefreshResult) -> Refusal:
    """Why a forced ``manual`` refresh that did not succeed serves nothing.

    Unlike a read, the refresh route has no valid token to fall back on and reports every failure
    that is neither a held lock nor the rate limit as a failed refresh, with the core's
    ``outcome`` and ``error_code`` in the payload (``lock_unavailable`` included).
    """
    error = result.error
    if result.outcome == "lock_timeout":
        return Refusal.LOCK_TIMEOUT
    if error is not None and error.error_code == "throttled":
        return Refusal.RATE_LIMITED
    if error is not None and error.permanent:
        return Refusal.PROVIDER_REJECTED
    return Refusal.FAILED


def refused_manual(result: RefreshResult, shown: Connection) -> Response:
    """The refresh route's answer to a refresh that did not succeed (never a token)."""
    reason = manual_refusal(result)
    answer = REFUSALS[reason]
    payload: dict[str, Any] = {"connection": connection_denied(shown, result.log_id)}
    if reason is Refusal.RATE_LIMITED:
        payload["log_id"] = result.log_id
    elif reason is not Refusal.LOCK_TIMEOUT:
        # A failed refresh says what failed: the token.refresh line's outcome and error.
        error = result.error
        payload["outcome"] = result.outcome
        payload["error_code"] = error.error_code if error else None
        payload["error_class"] = error.error_class if error else None
        payload["log_id"] = result.log_id
    return error_response(
        answer.status, answer.code, answer.message_for(manual=True), payload=payload
    )
