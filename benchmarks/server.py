"""The read-path benchmark's server: freshtoken's app plus a baseline route, in one process.

``python -m benchmarks.server --port N`` serves, with uvicorn configured as ``freshtoken api`` does
(one worker, same loop and HTTP implementation, access log off, freshtoken's JSON logging):

* every freshtoken route, from ``create_app(runtime)`` unchanged, and
* ``GET /_bench/baseline/{connection_id}?provider_config_key=...``: the same indexed SELECT the read
  path's lookup uses (``provider_config_key``, ``connection_id``, live rows, through the
  ``uq_connections_live_key`` index) on the same engine and pool, returning the row as JSON. No
  authentication, no decryption, no refresh check, no write. It is a plain ``def`` handler like
  freshtoken's, so both pay the same threadpool hop and both pass the same middlewares.

The baseline is added with ``app.include_router`` after ``create_app``: the API package is not
modified.
"""

from __future__ import annotations

import argparse
from typing import Any

import orjson
from fastapi import APIRouter, Request
from sqlalchemy import bindparam, select
from starlette.responses import Response

from freshtoken.store.models import Connection

BASELINE_PREFIX = "/_bench/baseline/"

_TABLE = Connection.__table__


def _default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def row_dict(row: Any) -> dict[str, Any]:
    """A row mapping as a plain dict (column names are ``str`` subclasses orjson refuses)."""
    return {str(key): value for key, value in row.items()}


def baseline_router() -> APIRouter:
    """The baseline route: one indexed SELECT on the runtime's engine, the row as JSON."""
    router = APIRouter()
    statement = select(_TABLE).where(
        _TABLE.c.provider_config_key == bindparam("pck"),
        _TABLE.c.connection_id == bindparam("cid"),
        _TABLE.c.deleted_at.is_(None),
    )

    @router.get(BASELINE_PREFIX + "{connection_id}", include_in_schema=False)
    def baseline(connection_id: str, provider_config_key: str, request: Request) -> Response:
        engine = request.app.state.runtime.engine
        with engine.connect() as conn:
            row = (
                conn.execute(statement, {"pck": provider_config_key, "cid": connection_id})
                .mappings()
                .one_or_none()
            )
        if row is None:
            return Response(
                b'{"error":"not_found"}', status_code=404, media_type="application/json"
            )
        return Response(
            orjson.dumps(row_dict(row), default=_default), media_type="application/json"
        )

    return router


def app_factory() -> Any:
    """The ASGI app (uvicorn ``--factory``): freshtoken's app with the baseline route added."""
    from freshtoken.api.app import create_app
    from freshtoken.bootstrap import runtime_from_env

    app = create_app(runtime_from_env())
    app.include_router(baseline_router())
    return app


def main() -> None:
    """Serve on 127.0.0.1 with the options ``freshtoken api`` uses."""
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m benchmarks.server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        "benchmarks.server:app_factory",
        factory=True,
        host=args.host,
        port=args.port,
        workers=1,
        log_config=None,
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
