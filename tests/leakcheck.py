"""A pytest plugin: nothing any test logs may contain a token or secret.

Every log record of the whole session (and every ``*.log`` file a test's subprocesses wrote under
the session's temporary directory) is scanned at the end for the mock provider's tokens (which all
start with ``mock-at-``/``mock-rt-``, its authorization codes ``mock-code-``, connect
session tokens), the mock client secret, and the test API and encryption
keys. A hit fails the session, naming the file and the kind of secret (never the secret itself).
"""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path

import pytest

from freshtoken.logs import json_formatter

_TOKEN = re.compile(r"mock-(?:at|rt|code)-[A-Za-z0-9_\-]{16,}|nango_connect_session_[0-9a-f]{64}")


def _fixed_secrets() -> dict[str, str]:
    from tests.support import ENCRYPTION_KEY, SECRET_KEY

    return {
        "test API secret key": SECRET_KEY,
        "test encryption key": ENCRYPTION_KEY,
        "mock client secret": "mock-secret",
    }


class _KeptFileHandler(logging.FileHandler):
    freshtoken_keep = True


_state: dict[str, object] = {}


def pytest_sessionstart(session: pytest.Session) -> None:  # noqa: ARG001 - hook signature
    """Attach a handler that records every log line of the session to a file."""
    path = Path(tempfile.mkstemp(prefix="freshtoken-leakcheck-", suffix=".jsonl")[1])
    handler = _KeptFileHandler(path, encoding="utf-8")
    handler.setFormatter(json_formatter())
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(handler)
    # Record info lines (token.refresh, refresh.scan) even where no test configured logging.
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    _state.update(path=path, handler=handler)


def _scan(text: str) -> list[str]:
    found = []
    if _TOKEN.search(text):
        found.append("mock provider token")
    for name, value in _fixed_secrets().items():
        if value in text:
            found.append(name)
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:  # noqa: ARG001
    """Fail the session if any captured log line carries a secret."""
    handler = _state.get("handler")
    path = _state.get("path")
    if not isinstance(handler, logging.Handler) or not isinstance(path, Path):
        return
    logging.getLogger().removeHandler(handler)
    handler.close()
    leaks: list[str] = []
    for kind in _scan(path.read_text(encoding="utf-8", errors="replace")):
        leaks.append(f"in-process logs: {kind}")
    basetemp = getattr(session.config, "_tmp_path_factory", None)
    if basetemp is not None:
        root = basetemp.getbasetemp()
        for log_file in root.rglob("*.log"):
            for kind in _scan(log_file.read_text(encoding="utf-8", errors="replace")):
                leaks.append(f"{log_file.relative_to(root)}: {kind}")
    path.unlink(missing_ok=True)
    if leaks:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = "LEAK CHECK FAILED: secrets reached log output:\n  " + "\n  ".join(leaks)
        if reporter is not None:
            reporter.write_line(message, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
