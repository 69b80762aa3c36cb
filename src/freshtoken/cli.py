"""The ``freshtoken`` command line: thin shells around the runtime and the refresh service."""

from __future__ import annotations

import os
import sys
from typing import Any

import click
import orjson

from freshtoken.bootstrap import runtime_from_env, settings_from_env
from freshtoken.errors import ConfigError
from freshtoken.ops_report import report


def _fail(message: str) -> None:
    click.echo(f"freshtoken: {message}", err=True)
    raise SystemExit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """freshtoken: OAuth connections served Nango-compatibly and kept fresh ahead of time."""


# -- api --------------------------------------------------------------------------------------


@main.command()
@click.option("--host", default=None, help="Bind address (default FRESHTOKEN_API_HOST).")
@click.option("--port", type=int, default=None, help="Port (default FRESHTOKEN_API_PORT).")
@click.option("--workers", type=int, default=1, show_default=True, help="Uvicorn workers.")
def api(host: str | None, port: int | None, workers: int) -> None:
    """Serve the HTTP API with uvicorn."""
    import uvicorn

    try:
        settings = settings_from_env()
    except ConfigError as exc:
        _fail(f"configuration error: {exc}")
        return
    # Each worker process builds its own runtime from the same environment; the address goes
    # there too, so the default FRESHTOKEN_PUBLIC_URL (the OAuth redirect base) is this one.
    os.environ["FRESHTOKEN_API_HOST"] = host or settings.api_host
    os.environ["FRESHTOKEN_API_PORT"] = str(port or settings.api_port)
    uvicorn.run(
        "freshtoken.bootstrap:asgi_app",
        factory=True,
        host=host or settings.api_host,
        port=port or settings.api_port,
        workers=workers,
        log_config=None,
        access_log=False,
        server_header=False,
    )


# -- db ---------------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: head)."""
    from freshtoken import migrate

    runtime = runtime_from_env()
    migrate.upgrade(runtime.engine, revision)
    click.echo(f"database at {revision}")


@db.command("check")
def db_check() -> None:
    """Exit non-zero if the models and the migrated schema differ."""
    from freshtoken import migrate

    runtime = runtime_from_env()
    drift = migrate.schema_drift(runtime.engine)
    if drift:
        for item in drift:
            click.echo(repr(item))
        raise SystemExit(1)
    click.echo("schema matches the models")


# -- keys -------------------------------------------------------------------------------------


@main.group()
def keys() -> None:
    """Encryption and API key commands."""


@keys.command("generate")
def keys_generate() -> None:
    """Print a new encryption key and a new API secret key (as environment lines)."""
    from freshtoken.settings import generate_key, generate_secret_key

    click.echo(f"FRESHTOKEN_ENCRYPTION_KEY={generate_key()}")
    click.echo(f"FRESHTOKEN_SECRET_KEY={generate_secret_key()}")


@keys.command("rotate")
@click.option("--batch-size", type=int, default=500, show_default=True)
def keys_rotate(batch_size: int) -> None:
    """Re-encrypt every stored secret under FRESHTOKEN_ENCRYPTION_KEY (resumable)."""
    from tqdm import tqdm

    from freshtoken.keyrotation import pending_count, rotate_keys

    runtime = runtime_from_env()
    total = pending_count(runtime)
    with tqdm(total=total, unit="row", file=sys.stderr, disable=None) as bar:
        report = rotate_keys(runtime, batch_size=batch_size, progress=bar.update)
    click.echo(
        orjson.dumps(
            {
                "connections": report.connections,
                "integrations": report.integrations,
                "skipped_concurrent": report.skipped_concurrent,
                "remaining": pending_count(runtime),
                "current_key_id": runtime.cipher.current_key_id,
            }
        ).decode()
    )


# -- refresh ----------------------------------------------------------------------------------


@main.command()
@click.argument("provider_config_key")
@click.argument("connection_id")
def refresh(provider_config_key: str, connection_id: str) -> None:
    """Force one refresh of a connection and report the outcome (never the token)."""
    from freshtoken.refresh.service import RefreshService

    runtime = runtime_from_env()
    with runtime.store() as store:
        conn = store.get_connection(provider_config_key, connection_id)
        pk = conn.id if conn else None
    if pk is None:
        _fail(f"no connection {connection_id!r} for integration {provider_config_key!r}")
        return
    service = runtime.extras["refresh_service"]
    assert isinstance(service, RefreshService)
    result = service.refresh(pk, trigger="manual", force=True)
    report: dict[str, Any] = {
        "connection_id": connection_id,
        "provider_config_key": provider_config_key,
        "outcome": result.outcome,
        "log_id": result.log_id,
        "expires_at": result.credentials.get("expires_at") if result.credentials else None,
    }
    if result.error is not None:
        report.update(
            error_code=result.error.error_code,
            error_class=result.error.error_class,
            http_status=result.error.http_status,
        )
    click.echo(orjson.dumps(report).decode())
    raise SystemExit(0 if result.ok else 1)


# -- worker and beat --------------------------------------------------------------------------


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--concurrency", "-c", type=int, default=None, help="Worker processes/threads.")
@click.option(
    "--pool",
    type=click.Choice(["prefork", "threads", "solo"]),
    default="prefork",
    show_default=True,
)
@click.pass_context
def worker(ctx: click.Context, concurrency: int | None, pool: str) -> None:
    """Run a Celery worker (extra arguments go to ``celery worker``)."""
    from freshtoken.worker.celery_app import QUEUE, create_celery

    try:
        settings = settings_from_env()
    except ConfigError as exc:
        _fail(f"configuration error: {exc}")
        return
    app = create_celery(settings)
    argv = ["worker", f"--pool={pool}", f"--queues={QUEUE}", f"--loglevel={settings.log_level}"]
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    app.worker_main([*argv, *ctx.args])


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def beat(ctx: click.Context) -> None:
    """Run Celery beat (exactly one per deployment; it only publishes the scan task)."""
    from freshtoken.worker.celery_app import create_celery

    try:
        settings = settings_from_env()
    except ConfigError as exc:
        _fail(f"configuration error: {exc}")
        return
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = create_celery(settings)
    schedule = settings.data_dir / "celerybeat-schedule"
    app.start(["beat", f"--schedule={schedule}", f"--loglevel={settings.log_level}", *ctx.args])


# -- mock provider ----------------------------------------------------------------------------


@main.command("mock-provider")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8089, show_default=True)
@click.option("--lifetime", type=float, default=3600, show_default=True, help="Token seconds.")
@click.option("--latency", type=float, default=0.0, show_default=True, help="Seconds per call.")
@click.option("--rotate/--no-rotate", default=True, show_default=True)
@click.option("--reuse-detection/--no-reuse-detection", default=True, show_default=True)
@click.option("--grace", type=float, default=0.0, show_default=True, help="Reuse grace seconds.")
@click.option("--client-id", default="mock-client", show_default=True)
@click.option("--client-secret", default="mock-secret", show_default=True)
@click.option(
    "--client-auth", type=click.Choice(["any", "basic", "body"]), default="any", show_default=True
)
def mock_provider(
    host: str,
    port: int,
    lifetime: float,
    latency: float,
    rotate: bool,
    reuse_detection: bool,
    grace: float,
    client_id: str,
    client_secret: str,
    client_auth: str,
) -> None:
    """Run a local OAuth2 token endpoint that behaves like the hard providers (for tests/demos)."""
    from freshtoken.mockprovider import MockProviderConfig, serve

    serve(
        MockProviderConfig(
            token_lifetime_seconds=lifetime,
            latency_seconds=latency,
            rotate_refresh_tokens=rotate,
            reuse_detection=reuse_detection,
            grace_seconds=grace,
            client_id=client_id,
            client_secret=client_secret,
            client_auth=client_auth,
        ),
        host,
        port,
    )


# -- dev --------------------------------------------------------------------------------------


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=None, help="Port (default FRESHTOKEN_API_PORT).")
@click.option("--demo", is_flag=True, help="Also run the mock provider and import demo tokens.")
def dev(host: str, port: int | None, demo: bool) -> None:
    """Everything in one process on the embedded default: API (and worker and beat)."""
    import uvicorn

    from freshtoken import migrate
    from freshtoken.api.app import create_app
    from freshtoken.worker.embedded import start_embedded

    runtime = runtime_from_env()
    migrate.upgrade(runtime.engine)
    settings = runtime.settings
    port = port or settings.api_port
    # The default FRESHTOKEN_PUBLIC_URL (the OAuth redirect base) is where this listens.
    runtime.settings = settings = settings.model_copy(update={"api_host": host, "api_port": port})
    start_embedded(runtime, demo=demo)
    click.echo(
        "\n".join(
            [
                "",
                f"  freshtoken is running at http://{host}:{port}",
                f"  secret key (Authorization: Bearer ...): {settings.secret_key_value()}",
                f"  API docs: http://{host}:{port}/docs",
                f"  database: {settings.resolved_database_url}",
                "",
            ]
        ),
        err=True,
    )
    uvicorn.run(
        create_app(runtime),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        server_header=False,
    )


# -- connect ----------------------------------------------------------------------------------


@main.command()
@click.argument("integration")
@click.argument("connection_id")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="connection_config value for the flow (e.g. subdomain=acme); repeatable.",
)
def connect(integration: str, connection_id: str, params: tuple[str, ...]) -> None:
    """Print a link that connects (or re-authorises) CONNECTION_ID of INTEGRATION in a browser."""
    from freshtoken.connect.links import LinkError, connect_link

    config: dict[str, str] = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _fail(f"--param must be KEY=VALUE (got {item!r})")
        config[key] = value
    runtime = runtime_from_env()
    try:
        link, expires_at = connect_link(runtime, integration, connection_id, config)
    except LinkError as exc:
        _fail(str(exc))
        return
    finally:
        runtime.close()
    click.echo(link)
    click.echo(
        f"(valid until {expires_at.isoformat(timespec='seconds')}; open it in a browser)", err=True
    )


# -- report -----------------------------------------------------------------------------------

main.add_command(report)


if __name__ == "__main__":  # pragma: no cover
    main()
