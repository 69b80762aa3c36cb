"""docker-compose.yml and the Dockerfile: valid Compose, real CLI commands, safe defaults.

The compose file is validated offline against a vendored copy of the Compose Specification JSON
schema (tests/fixtures/compose-spec.json, see tests/fixtures/README.md). Every ``freshtoken ...``
invocation in the compose file and the Dockerfile is resolved against the click CLI, so renaming
a command or an option breaks this test instead of the deployment.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest
import yaml
from jsonschema.validators import validator_for
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource

from freshtoken.cli import main

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
SCHEMA_FILE = ROOT / "tests" / "fixtures" / "compose-spec.json"

# Secrets compose must refuse to start without: `${NAME:?message}`, never a default.
REQUIRED_SECRETS = ("FRESHTOKEN_SECRET_KEY", "FRESHTOKEN_ENCRYPTION_KEY", "POSTGRES_PASSWORD")
FRESHTOKEN_SERVICES = ("migrate", "api", "worker", "beat")
SECRET_NAME = re.compile(r"(SECRET|PASSWORD|_KEYS?$)")


def _compose_text() -> str:
    return COMPOSE_FILE.read_text(encoding="utf-8")


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(_compose_text())  # resolves anchors and `<<` merge keys
    assert isinstance(data, dict)
    return data


def _services() -> dict[str, dict[str, Any]]:
    services = _compose()["services"]
    assert isinstance(services, dict)
    return services


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _argv(value: str | list[str]) -> list[str]:
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def _dockerfile_instruction(name: str) -> list[str]:
    """The exec-form argv of the last ``name`` instruction (the final stage's)."""
    found: list[list[str]] = []
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        keyword, _, rest = line.strip().partition(" ")
        if keyword.upper() == name:
            argv = json.loads(rest)  # exec form (JSON array) is required for signal handling
            assert isinstance(argv, list), f"{name} must use the exec (JSON array) form"
            found.append([str(a) for a in argv])
    assert found, f"Dockerfile has no {name}"
    return found[-1]


def _uses_freshtoken_image(service: dict[str, Any]) -> bool:
    return "build" in service or "freshtoken" in str(service.get("image", ""))


def _freshtoken_invocations() -> list[tuple[str, list[str]]]:
    """(where, argv after ``freshtoken``) for every freshtoken invocation in the deploy files."""
    entrypoint = _dockerfile_instruction("ENTRYPOINT")
    invocations = [("Dockerfile CMD", _dockerfile_instruction("CMD"))]
    for name, service in _services().items():
        if not _uses_freshtoken_image(service) or "command" not in service:
            continue
        argv = _argv(service["command"])
        if "entrypoint" in service:
            argv = _argv(service["entrypoint"]) + argv
        elif entrypoint != ["freshtoken"]:
            argv = entrypoint + argv
        if argv and argv[0] == "freshtoken":
            argv = argv[1:]
        invocations.append((f"compose service {name}", argv))
    # Hints in `${VAR:?... (freshtoken keys generate)}` messages must name real commands too.
    for hint in sorted(set(re.findall(r"\(freshtoken ([^)]+)\)", _compose_text()))):
        invocations.append(("compose hint", shlex.split(hint)))
    return invocations


INVOCATIONS = _freshtoken_invocations()


def _resolve(argv: list[str]) -> tuple[click.Command, click.Context, list[str]]:
    """Walk ``argv`` down the click groups; return the leaf command, its parent context, rest."""
    command: click.Command = main
    ctx = click.Context(main, info_name="freshtoken")
    rest = list(argv)
    path = ["freshtoken"]
    while isinstance(command, click.Group):
        assert rest and not rest[0].startswith("-"), f"`{' '.join(path)}` needs a subcommand"
        name = rest.pop(0)
        sub = command.get_command(ctx, name)
        assert sub is not None, (
            f"`{' '.join(path)}` has no subcommand {name!r} "
            f"(has: {', '.join(command.list_commands(ctx))})"
        )
        path.append(name)
        ctx = click.Context(sub, info_name=name, parent=ctx)
        command = sub
    assert ctx.parent is not None
    return command, ctx.parent, rest


@pytest.mark.parametrize(
    ("where", "argv"), INVOCATIONS, ids=[f"{w}: {' '.join(a)}" for w, a in INVOCATIONS]
)
def test_freshtoken_commands_exist_in_cli(where: str, argv: list[str]) -> None:
    """Each invocation names a real (sub)command, with options it has and values it accepts."""
    command, parent, rest = _resolve(argv)
    known = {
        opt
        for param in command.params
        if isinstance(param, click.Option)
        for opt in (*param.opts, *param.secondary_opts)
    }
    for token in rest:
        if token.startswith("-"):
            option = token.split("=", 1)[0]
            assert option in known, f"{where}: `{command.name}` has no option {option}"
    # Full parse without invoking: wrong types, missing arguments and extras fail here.
    command.make_context(command.name, list(rest), parent=parent)


def test_every_compose_command_was_collected() -> None:
    """The services we rely on are all checked above (the parametrization is not vacuous)."""
    checked = {where for where, _ in INVOCATIONS}
    for name in (*FRESHTOKEN_SERVICES, "mock-provider", "demo-seed"):
        assert f"compose service {name}" in checked
    assert _dockerfile_instruction("ENTRYPOINT") == ["freshtoken"]


# -- Compose Specification schema -------------------------------------------------------------


def _no_network(uri: str) -> Resource[Any]:
    raise NoSuchResource(ref=uri)  # validation must work offline: no remote $ref is fetched


def _validator_class(schema: dict[str, Any]) -> type[jsonschema.protocols.Validator]:
    """The validator for the draft the schema declares.

    The Compose schema says ``http://json-schema.org/draft/2019-09/schema#``, while the 2019-09
    meta-schema's id is https: ``validator_for`` alone would silently fall back to the latest draft.
    """
    declared = str(schema["$schema"])
    for uri in (declared, declared.replace("http://", "https://", 1)):
        cls = validator_for({"$schema": uri}, default=None)
        if cls is not None:
            return cls
    raise AssertionError(f"unknown $schema {declared!r}")


def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    cls = _validator_class(schema)
    cls.check_schema(schema)
    return cls(schema, registry=Registry(retrieve=_no_network))


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_schema_fixture_is_the_compose_spec_and_self_contained() -> None:
    """The vendored schema is the Compose Specification (draft 2019-09) with only local $refs."""
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert schema["title"] == "Compose Specification"
    assert _validator_class(schema) is jsonschema.Draft201909Validator
    refs = _refs(schema)
    assert refs
    assert all(ref.startswith("#") for ref in refs), [r for r in refs if not r.startswith("#")]


def test_compose_file_matches_compose_spec() -> None:
    """docker-compose.yml validates against the Compose Specification schema."""
    errors = sorted(_validator().iter_errors(_compose()), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors
    )


def test_schema_rejects_a_broken_compose_file() -> None:
    """The validator is not vacuous: a typo'd key and a bad depends_on condition are caught."""
    broken = _compose()
    broken["services"]["api"]["healthchek"] = {"test": ["CMD", "true"]}
    broken["services"]["worker"]["depends_on"]["migrate"]["condition"] = "service_done"
    paths = {tuple(map(str, e.absolute_path)) for e in _validator().iter_errors(broken)}
    assert ("services", "api") in paths
    assert any(p[:3] == ("services", "worker", "depends_on") for p in paths), paths


# -- deployment rules -------------------------------------------------------------------------


def _beat_services() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in _services().items()
        if _uses_freshtoken_image(service)
        and [a for a in _argv(service.get("command", [])) if a != "freshtoken"][:1] == ["beat"]
    }


def test_exactly_one_beat() -> None:
    """One service runs beat, pinned to one replica: two schedulers would double every sweep."""
    beats = _beat_services()
    assert list(beats) == ["beat"], f"expected exactly one beat service, got {list(beats)}"
    beat = beats["beat"]
    assert "scale" not in beat
    deploy = beat.get("deploy") or {}
    assert deploy.get("replicas") == 1
    assert deploy.get("mode", "replicated") == "replicated"
    for name, service in _services().items():
        assert (service.get("deploy") or {}).get("replicas", 1) >= 1, name


def test_required_secrets_use_the_error_form() -> None:
    """Every interpolation of a required secret is ``${NAME:?message}``: no default, no blank."""
    text = _compose_text()
    for name in REQUIRED_SECRETS:
        uses = re.findall(r"\$\{" + name + r"(?![A-Z0-9_])([^}]*)\}", text)
        assert uses, f"{name} is never used"
        for tail in uses:
            assert re.fullmatch(r":\?\S.*", tail), f"${{{name}{tail}}} must be ${{{name}:?...}}"
        assert not re.search(r"\$" + name + r"(?![A-Z0-9_])", text), f"bare ${name}"


def test_secret_env_vars_come_from_the_environment() -> None:
    """No service hard-codes a secret; freshtoken services get both keys in the `:?` form."""
    required = re.compile(r"\$\{(?P<name>[A-Z0-9_]+):\?[^}]+\}")
    services = _services()
    for name, service in services.items():
        for var, value in _environment(service).items():
            if SECRET_NAME.search(var):
                assert "${" in value, f"{name}: {var} is hard-coded"
    for name in FRESHTOKEN_SERVICES:
        env = _environment(services[name])
        assert env.get("FRESHTOKEN_ENV") == "production", name
        for var in ("FRESHTOKEN_SECRET_KEY", "FRESHTOKEN_ENCRYPTION_KEY"):
            match = required.fullmatch(env.get(var, ""))
            assert match and match["name"] == var, f"{name}: {var}={env.get(var)!r}"
        assert "${POSTGRES_PASSWORD:?" in env["FRESHTOKEN_DATABASE_URL"], name
    postgres_env = _environment(services["postgres"])
    assert postgres_env["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")


def test_services_wait_for_migrations() -> None:
    """api, worker and beat start only after `db upgrade` exited 0; migrate waits for postgres."""
    services = _services()
    for name in ("api", "worker", "beat"):
        depends = services[name].get("depends_on")
        assert isinstance(depends, dict), f"{name}: depends_on needs the long (condition) form"
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["redis"]["condition"] == "service_healthy", name
    assert _argv(services["migrate"]["command"]) in (["db", "upgrade"], ["db", "upgrade", "head"])
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["migrate"].get("restart", "no") == "no"


def test_healthchecks() -> None:
    """postgres (pg_isready), redis (redis-cli ping) and the api (/health) have healthchecks."""
    services = _services()
    expected = {"postgres": "pg_isready", "redis": "redis-cli ping", "api": "/health"}
    for name, needle in expected.items():
        check = services[name].get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert not check.get("disable", False), name
        assert needle in " ".join(_argv(check["test"])), f"{name}: {check['test']}"
    assert "curl" not in " ".join(_argv(services["api"]["healthcheck"]["test"]))


def test_infrastructure_settings() -> None:
    """Pinned major images, Redis never evicts, the demo provider is opt-in."""
    services = _services()
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7"
    redis_cmd = _argv(services["redis"]["command"])
    assert redis_cmd[redis_cmd.index("--maxmemory-policy") + 1] == "noeviction"
    assert services["mock-provider"]["profiles"] == ["demo"]
    for name in (*FRESHTOKEN_SERVICES, "postgres", "redis"):
        assert not services[name].get("profiles"), f"{name} must run without a profile"
    assert [str(p) for p in services["api"]["ports"]] == [
        "${FRESHTOKEN_API_PUBLISH:-127.0.0.1:3003}:3003"
    ]


def test_dockerfile_basics() -> None:
    """python:3.11-slim, a non-root user, `pip install .` without extras, freshtoken entrypoint."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    stages = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    assert stages and all(image == "python:3.11-slim" for image in stages), stages
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    assert re.search(r"pip install \.(\s|$)", text)
    assert "[test]" not in text and "[dev]" not in text
    assert _dockerfile_instruction("ENTRYPOINT") == ["freshtoken"]


# -- first hour: demo seeder, .env.example, published ports ------------------------------------

ENV_EXAMPLE = ROOT / ".env.example"


def _interpolated_variables() -> set[str]:
    """Every ``${NAME...}`` compose interpolates (comments excluded)."""
    names: set[str] = set()
    for line in _compose_text().splitlines():
        code = line.split("#", 1)[0] if line.lstrip().startswith("#") else line
        names.update(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", code))
    return names


def _env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def _default_binding(port: str) -> str:
    """The host side of a port mapping with ``${VAR:-default}`` replaced by its default."""
    resolved = re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", port)
    return resolved.rsplit(":", 1)[0]


def test_env_example_lists_every_variable_compose_reads() -> None:
    """.env.example names every interpolated variable, and only those."""
    example = _env_example()
    assert set(example) == _interpolated_variables()


def test_env_example_says_how_to_generate_keys_without_a_host_cli() -> None:
    """The key command in .env.example runs through the image's `freshtoken` entrypoint."""
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    command = "docker compose run --rm --no-deps api keys generate"
    assert command in text and command in _compose_text()
    resolved, _, rest = _resolve(command.split(" api ", 1)[1].split())
    assert resolved.name == "generate" and rest == []
    assert _dockerfile_instruction("ENTRYPOINT") == ["freshtoken"]


def test_env_example_placeholders_never_start_a_service() -> None:
    """An unedited copy of .env.example is refused by freshtoken (invalid encryption key)."""
    from freshtoken.errors import ConfigError
    from freshtoken.settings import decode_key

    example = _env_example()
    for name in REQUIRED_SECRETS:
        assert example[name], f"{name} must have a placeholder (compose refuses empty values)"
    with pytest.raises(ConfigError, match="FRESHTOKEN_ENCRYPTION_KEY"):
        decode_key(example["FRESHTOKEN_ENCRYPTION_KEY"], "FRESHTOKEN_ENCRYPTION_KEY")
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").split()
    assert ".env" in ignored


def test_every_published_port_binds_to_localhost_by_default() -> None:
    """API, mock provider and ops ports all publish on 127.0.0.1 unless a variable says else."""
    published = {
        name: [str(p) for p in service.get("ports", [])]
        for name, service in _services().items()
        if service.get("ports")
    }
    assert {"api", "mock-provider", "grafana", "loki", "alertmanager"} <= set(published)
    for name, ports in published.items():
        for port in ports:
            assert _default_binding(port).startswith("127.0.0.1:"), f"{name}: {port}"


def test_demo_profile_seeds_connections_once() -> None:
    """`--profile demo` has a one-shot seeder that waits for the schema and a healthy provider."""
    services = _services()
    seeder = services["demo-seed"]
    assert seeder["profiles"] == ["demo"]
    assert seeder.get("restart") == "no"
    argv = _argv(seeder["command"])
    assert argv[0] == "demo-seed"
    assert argv[argv.index("--provider-url") + 1] == "http://mock-provider:8089"
    depends = seeder["depends_on"]
    assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert depends["mock-provider"]["condition"] == "service_healthy"
    check = " ".join(_argv(services["mock-provider"]["healthcheck"]["test"]))
    assert "8089/health" in check
    assert _environment(seeder) == _environment(services["worker"])  # same database and keys
