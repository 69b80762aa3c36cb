"""``freshtoken providers check [FILE]``: what a providers file gives freshtoken, and what not.

Loads a providers file the way the service does (Nango's ``providers.yaml`` unchanged, aliases
resolved) and prints, per auth mode, how many entries load and every skipped entry with its
reason. Exits 0 even when entries are skipped (skipping is the designed behaviour); exits 2 only
for a file that is not a catalog at all (missing, not YAML, not a mapping of entries).
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict

import click

from freshtoken.providers.catalog import (
    ProviderCatalogError,
    SkippedEntry,
    load_catalog,
    parse_catalog_file,
)


@click.group()
def providers() -> None:
    """Provider catalog commands."""


@providers.command("check")
@click.argument("file", required=False, type=click.Path(dir_okay=True, path_type=str))
def check(file: str | None) -> None:
    """Print what FILE (default FRESHTOKEN_PROVIDERS_FILE, else the built-in catalog) serves."""
    path = file or os.environ.get("FRESHTOKEN_PROVIDERS_FILE") or ""
    try:
        if path:
            specs, skipped = parse_catalog_file(path)
        else:
            builtin = load_catalog()
            specs, skipped = builtin.all(), list(builtin.skipped)
            path = "<builtin>"
    except ProviderCatalogError as exc:
        click.echo(f"freshtoken: not a providers catalog: {exc}", err=True)
        raise SystemExit(2) from None
    loaded = Counter(spec.auth_mode for spec in specs)
    skipped_by_mode: dict[str, list[SkippedEntry]] = defaultdict(list)
    for entry in skipped:
        skipped_by_mode[entry.auth_mode or "?"].append(entry)
    aliases = sum(1 for spec in specs if spec.alias_of)
    click.echo(f"{path}: {len(specs)} loaded ({aliases} through alias), {len(skipped)} skipped")
    for mode in sorted(set(loaded) | set(skipped_by_mode)):
        click.echo(
            f"  {mode:<20} {loaded.get(mode, 0):>5} loaded  {len(skipped_by_mode[mode]):>4} skipped"
        )
    if skipped:
        click.echo("skipped:")
        for entry in sorted(skipped, key=lambda e: ((e.auth_mode or "?"), e.name)):
            click.echo(f"  {entry.name} ({entry.auth_mode or 'no auth_mode'}): {entry.reason}")
