"""The ``freshtoken`` command line: thin shells around the runtime and the refresh service."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from typing import TYPE_CHECKING, Any

import click
import orjson

from freshtoken.bootstrap import plain_settings, runtime_from_env, settings_from_env
from freshtoken.errors import ConfigError
from freshtoken.ops_report import report
from freshtoken.preflight import CliError as CliErrorLine
from freshtoken.providers.check import providers as providers_group
from freshtoken.settings import Settings

if TYPE_CHECKING:
    from celery import Celery


def _fail(message: str) -> None:
    click.echo(f"freshtoken: {message}", err=True)
    raise SystemExit(2)


class _OneLineErrors(click.Group):
    """A group whose commands fail with one line on stderr and a non-zero exit, never a trace.

    Known failures (no schema, unreachable database or Redis, unsupported URL, configuration)
    say what to do; anything else prints its type and first line, and the traceback only with
    FRESHTOKEN_TRACEBACK=1.
    """

    def main(self, *args: Any, **kwargs: Any) -> Any:
        """Like click's, but usage errors are one line too (with where to read the usage)."""
        kwargs["standalone_mode"] = False
        try:
            result = super().main(*args, **kwargs)
        except click.ClickException as exc:
            no_args = getattr(click.exceptions, "NoArgsIsHelpError", ())
            if isinstance(exc, no_args):  # `freshtoken db`: the group's help is the answer
                click.echo(exc.format_message(), err=True)
                raise SystemExit(exc.exit_code) from None
            hint = ""
            if isinstance(exc, click.UsageError) and exc.ctx is not None:
                hint = f" (see `{exc.ctx.command_path} --help`)"
            click.echo(f"freshtoken: {exc.format_message()}{hint}", err=True)
            raise SystemExit(exc.exit_code) from None
        except click.Abort:
            click.echo("freshtoken: aborted", err=True)
            raise SystemExit(1) from None
        # standalone_mode=False returns the exit code of ctx.exit() instead of exiting.
        raise SystemExit(result if isinstance(result, int) else 0)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Accept a leading ``freshtoken`` (the image's entrypoint already is ``freshtoken``).

        So ``docker compose run --rm api freshtoken keys generate`` works as typed.
        """
        if ctx.parent is None and args[:1] == ["freshtoken"]:
            args = args[1:]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command, translating exceptions into one-line errors."""
        import os

        from freshtoken.preflight import CliError, describe

        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except CliError as exc:
            click.echo(f"freshtoken: {exc}", err=True)
            raise SystemExit(exc.exit_code) from None
        except ConfigError as exc:
            click.echo(f"freshtoken: configuration error: {exc}", err=True)
            raise SystemExit(2) from None
        except BrokenPipeError:
            # `freshtoken ... | head`: the reader left; stop quietly, as Unix tools do.
            with contextlib.suppress(OSError):
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - replaces a dead stream
            raise SystemExit(0) from None
        except Exception as exc:
            if os.environ.get("FRESHTOKEN_TRACEBACK") == "1":
                raise
            from freshtoken.logs import scrub_text

            settings = None
            with contextlib.suppress(Exception):
                settings = plain_settings()
            known = describe(exc, settings)
            if known is None:
                first = (str(exc).strip().splitlines() or [""])[0]
                known = CliError(
                    f"unexpected error: {type(exc).__name__}: {scrub_text(first)} "
                    "(FRESHTOKEN_TRACEBACK=1 shows the traceback)",
                    exit_code=1,
                )
            click.echo(f"freshtoken: {known}", err=True)
            raise SystemExit(known.exit_code) from None


def _schema_checked_settings() -> Settings:
    """Settings for a long-running command, after checking the database has the schema."""
    from freshtoken.preflight import check_schema

    check_schema(plain_settings())
    return settings_from_env()


@click.group(cls=_OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
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

    from freshtoken.preflight import check_schema

    settings = plain_settings()
    check_schema(settings)
    host, port = host or settings.api_host, port or settings.api_port
    # Every runtime (this process's, each worker's) reads the address from the environment, so
    # the default FRESHTOKEN_PUBLIC_URL (the OAuth redirect base) is where this listens.
    os.environ["FRESHTOKEN_API_HOST"] = host
    os.environ["FRESHTOKEN_API_PORT"] = str(port)
    # Bound here, before anything is printed, so a busy port is one line naming the setting.
    sock = bind_port(host, port)
    settings_from_env()  # keys and logging, as every worker process will resolve them
    options: dict[str, Any] = {"log_config": None, "access_log": False, "server_header": False}
    if workers == 1:
        config = uvicorn.Config("freshtoken.bootstrap:asgi_app", factory=True, **options)
        _serve(uvicorn.Server(config), sock)
        return
    # Several workers: uvicorn's supervisor binds and shares the socket itself.
    sock.close()
    # Each worker process builds its own runtime from the same environment.
    uvicorn.run(
        "freshtoken.bootstrap:asgi_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        **options,
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
    if revision == "head":
        # Data migration through the rotation machinery: older ciphertexts (v1, or under an old
        # key) are rewritten bound to their row's binding (v2). Resumable and idempotent.
        from freshtoken.keyrotation import rotate_keys

        report = rotate_keys(runtime)
        if report.connections or report.integrations:
            click.echo(
                f"re-encrypted {report.connections} connection(s) and "
                f"{report.integrations} integration secret(s)"
            )
        if report.undecryptable:
            click.echo(
                "freshtoken: could not decrypt (left as they are): "
                + ", ".join(report.undecryptable),
                err=True,
            )
            raise SystemExit(1)


@db.command("check")
def db_check() -> None:
    """Exit non-zero if the models and the migrated schema differ."""
    import logging

    from freshtoken import migrate

    runtime = runtime_from_env(require_schema=True)
    # Alembic narrates its context set-up at INFO; the verdict below is the output.
    logging.getLogger("alembic").setLevel(logging.WARNING)
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

    runtime = runtime_from_env(require_schema=True)
    total = pending_count(runtime)
    with tqdm(total=total, unit="row", file=sys.stderr, disable=None) as bar:
        report = rotate_keys(runtime, batch_size=batch_size, progress=bar.update)
    click.echo(
        orjson.dumps(
            {
                "connections": report.connections,
                "integrations": report.integrations,
                "skipped_concurrent": report.skipped_concurrent,
                "undecryptable": report.undecryptable,
                "remaining": pending_count(runtime),
                "current_key_id": runtime.cipher.current_key_id,
            }
        ).decode()
    )
    if report.undecryptable:
        # The rest are rotated; these rows need a human (restore the old key, or re-import).
        click.echo(
            f"freshtoken: {len(report.undecryptable)} row(s) could not be decrypted and were "
            f"left as they are: {', '.join(report.undecryptable)}",
            err=True,
        )
        raise SystemExit(1)


@keys.command("create")
@click.option("--scope", type=click.Choice(["read", "write", "admin"]), required=True)
@click.option("--name", required=True, help="What the key is for (shown by `keys list`).")
def keys_create(scope: str, name: str) -> None:
    """Create a scoped API key and print it once (only its SHA-256 is stored)."""
    from freshtoken.apikeys import create_key

    runtime = runtime_from_env()
    with runtime.store() as store:
        row, key = create_key(store.session, name=name, scope=scope, now=runtime.clock.now())
        click.echo(orjson.dumps({"id": row.id, "name": name, "scope": scope, "key": key}).decode())
    click.echo("freshtoken: store the key now; it cannot be shown again", err=True)


@keys.command("list")
def keys_list() -> None:
    """List the scoped API keys (id, name, scope, hint, created, revoked), one JSON per line."""
    from freshtoken.apikeys import list_keys

    runtime = runtime_from_env()
    with runtime.store() as store:
        for row in list_keys(store.session):
            line = {
                "id": row.id,
                "name": row.name,
                "scope": row.scope,
                "hint": row.hint + "...",
                "created_at": row.created_at.isoformat(),
                "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
            }
            click.echo(orjson.dumps(line).decode())


@keys.command("revoke")
@click.argument("key_id_or_name")
def keys_revoke(key_id_or_name: str) -> None:
    """Revoke a scoped API key by id or name (the API stops accepting it within 2 seconds)."""
    from freshtoken.apikeys import revoke_key

    runtime = runtime_from_env()
    with runtime.store() as store:
        revoked = [r.id for r in revoke_key(store.session, key_id_or_name, runtime.clock.now())]
    if not revoked:
        _fail(f"no live API key with id or name {key_id_or_name!r}")
    click.echo(orjson.dumps({"revoked": revoked}).decode())


# -- refresh ----------------------------------------------------------------------------------


@main.command()
@click.argument("provider_config_key")
@click.argument("connection_id")
def refresh(provider_config_key: str, connection_id: str) -> None:
    """Force one refresh of a connection and report the outcome (never the token)."""
    runtime = runtime_from_env(require_schema=True)
    with runtime.store() as store:
        conn = store.get_connection(provider_config_key, connection_id)
        pk = conn.id if conn else None
    if pk is None:
        _fail(
            f"no connection {connection_id!r} for integration {provider_config_key!r} "
            f"(GET /connections lists them)"
        )
        return
    result = runtime.require_refresh_service().refresh(pk, trigger="manual", force=True)
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

_EMBEDDED_OPTION = click.option(
    "--embedded",
    is_flag=True,
    help="Run without FRESHTOKEN_REDIS_URL on a private in-memory broker (worker: beat inside).",
)


def _require_redis(role: str, embedded: bool) -> None:
    """Refuse a separate worker or beat without Redis: they could not reach each other."""
    settings = plain_settings()
    if settings.embedded and not embedded:
        _fail(
            f"FRESHTOKEN_REDIS_URL is not set: a separate {role} talks to the others only "
            "through Redis (without it each process has its own in-memory broker and no task "
            "reaches a worker). Set FRESHTOKEN_REDIS_URL, run `freshtoken dev` for everything "
            "in one process, or pass --embedded to run this one alone anyway"
        )


def _run_celery(app: Celery, argv: list[str]) -> None:
    """Run ``celery ARGV`` for ``app`` and exit with Celery's exit code when it is not 0.

    Not ``app.worker_main()``/``app.start()``: they drop the code, so a worker that stopped on an
    unrecoverable error (kombu's restore_unacked when Redis goes away) exited 0, and an
    on-failure restart policy left it dead.
    """
    from celery.bin.celery import celery as celery_command

    celery_command.params[0].default = app
    try:
        code = celery_command.main(args=argv, standalone_mode=False)
    except click.exceptions.Exit as stop:  # click < 8.1 raises it even when not standalone
        code = stop.exit_code
    finally:
        celery_command.params[0].default = None
    if isinstance(code, int) and code != 0:
        raise SystemExit(code)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--concurrency", "-c", type=int, default=None, help="Worker processes/threads.")
@click.option(
    "--pool",
    type=click.Choice(["prefork", "threads", "solo"]),
    default="prefork",
    show_default=True,
)
@_EMBEDDED_OPTION
@click.pass_context
def worker(ctx: click.Context, concurrency: int | None, pool: str, embedded: bool) -> None:
    """Run a Celery worker (extra arguments go to ``celery worker``)."""
    from freshtoken.worker.celery_app import QUEUE, create_celery

    _require_redis("worker", embedded)
    settings = _schema_checked_settings()
    app = create_celery(settings)
    argv = ["worker", f"--pool={pool}", f"--queues={QUEUE}", f"--loglevel={settings.log_level}"]
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    if settings.embedded:
        # Its in-memory broker is private to this process: run beat inside it, or nothing
        # would ever publish the scan.
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        argv += ["--beat", f"--schedule={settings.data_dir / 'celerybeat-schedule'}"]
    _run_celery(app, [*argv, *ctx.args])


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@_EMBEDDED_OPTION
@click.pass_context
def beat(ctx: click.Context, embedded: bool) -> None:
    """Run Celery beat (exactly one per deployment; it only publishes the scan task)."""
    from freshtoken.worker.celery_app import create_celery

    _require_redis("beat", embedded)
    settings = _schema_checked_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = create_celery(settings)
    schedule = settings.data_dir / "celerybeat-schedule"
    _run_celery(
        app, ["beat", f"--schedule={schedule}", f"--loglevel={settings.log_level}", *ctx.args]
    )


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

    with _port_in_use_is_one_line(port, "--port"):
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


# -- demo seeder ------------------------------------------------------------------------------


@main.command("demo-seed")
@click.option(
    "--provider-url",
    default="http://127.0.0.1:8089",
    show_default=True,
    help="A running `freshtoken mock-provider`, as the worker reaches it.",
)
@click.option("--connections", type=click.IntRange(1, 100), default=5, show_default=True)
@click.option("--client-id", default="mock-client", show_default=True)
@click.option("--client-secret", default="mock-secret", show_default=True)
def demo_seed(provider_url: str, connections: int, client_id: str, client_secret: str) -> None:
    """Import demo connections whose tokens come from a running mock provider (idempotent).

    Prints the integration and connection ids as one JSON line.
    """
    import httpx

    from freshtoken.demo import DEMO_INTEGRATION, DEMO_LIFETIME_SECONDS, import_demo_connections

    runtime = runtime_from_env(require_schema=True)
    base = provider_url.rstrip("/")

    def seed() -> dict[str, Any]:
        try:
            response = httpx.post(
                f"{base}/_mock/seed", json={"lifetime_seconds": DEMO_LIFETIME_SECONDS}, timeout=10
            )
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise CliErrorLine(
                f"cannot seed tokens at the mock provider {base}: {type(exc).__name__} "
                "(is `freshtoken mock-provider` running there? see --provider-url)"
            ) from None
        data = response.json()
        assert isinstance(data, dict)
        return data

    ids = import_demo_connections(
        runtime,
        seed,
        token_url=f"{base}/oauth/token",
        client_id=client_id,
        client_secret=client_secret,
        count=connections,
    )
    runtime.close()
    click.echo(orjson.dumps({"integration": DEMO_INTEGRATION, "connections": ids}).decode())


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
    from freshtoken.preflight import display_url
    from freshtoken.worker.embedded import start_embedded

    settings = plain_settings()
    port = port or settings.api_port
    # Bind before anything else: a busy port is then one line, with nothing printed or started.
    sock = bind_port(host, port)
    runtime = runtime_from_env()
    migrate.upgrade(runtime.engine)
    settings = runtime.settings
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
                f"  database: {display_url(settings.resolved_database_url)}",
                "",
            ]
        ),
        err=True,
    )
    config = uvicorn.Config(
        create_app(runtime),
        log_config=None,
        access_log=False,
        server_header=False,
    )
    _serve(uvicorn.Server(config), sock)


def _serve(server: Any, sock: socket.socket) -> None:
    """Serve on a bound socket until SIGINT/SIGTERM (a Ctrl-C is a normal stop, not an error)."""
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])


@contextlib.contextmanager
def _port_in_use_is_one_line(port: int, option: str) -> Any:
    """Turn "address already in use" inside the block into one line naming the option."""
    import errno

    try:
        yield
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        _fail(f"port {port} is already in use: stop what listens there or pass {option} N")


def bind_port(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or exit with one line naming the port setting."""
    import errno

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # As uvicorn does: a restart may rebind while old connections sit in TIME_WAIT.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            _fail(
                f"port {port} on {host} is already in use (another freshtoken?): stop it, or "
                f"choose another port with FRESHTOKEN_API_PORT or --port (make run PORT={port + 1})"
            )
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc} (FRESHTOKEN_API_HOST/PORT)")
    sock.set_inheritable(True)
    return sock


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

# -- providers --------------------------------------------------------------------------------

main.add_command(providers_group)


if __name__ == "__main__":  # pragma: no cover
    main()
