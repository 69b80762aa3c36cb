"""``freshtoken.ops_report`` ships its script and style sheet as package data, used as read."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

from freshtoken import ops_report
from freshtoken.ops_report import html

ROOT = Path(__file__).resolve().parents[2]


def test_every_data_file_of_the_package_is_declared_as_package_data() -> None:
    """Each non-Python file in the package matches a package-data glob, so a wheel has it."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    globs = config["tool"]["setuptools"]["package-data"]["freshtoken"]
    package = Path(ops_report.__file__).parent
    data = [p for p in package.iterdir() if p.is_file() and p.suffix not in {".py", ".pyc"}]
    assert {p.name for p in data} >= {"report.js", "report.css"}
    for path in data:
        relative = path.relative_to(package.parent).as_posix()
        assert any(fnmatch.fnmatch(relative, g) for g in globs), relative


def test_the_page_inlines_the_data_files_and_hashes_the_script_as_shipped(tmp_path: Path) -> None:
    """The HTML page carries report.js and report.css verbatim; its CSP hash is of that script."""
    import base64
    import hashlib

    package = Path(ops_report.__file__).parent
    script = (package / "report.js").read_text(encoding="utf-8")
    style = (package / "report.css").read_text(encoding="utf-8")
    log = tmp_path / "empty.log"
    log.write_text("", encoding="utf-8")
    page = html.render_html(ops_report.collect((log,)), 10)
    assert f"<script>{script}</script>" in page
    assert f"<style>{style}</style>" in page
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"sha256-{digest}" in page
