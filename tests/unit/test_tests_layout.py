"""Where tests live: the directory says what a test needs, as its marker does.

Integration tests (real PostgreSQL and Redis, the ``integration`` marker) live in
tests/integration, each module marked as a whole; tests/unit holds none, so ``make test-unit``
(``-m "not integration"``) and ``make test-integration`` (``-m integration``) select what the
directories say.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _marks_integration(node: ast.AST) -> bool:
    """True when ``node`` mentions ``pytest.mark.integration`` anywhere."""
    return any(
        isinstance(sub, ast.Attribute)
        and sub.attr == "integration"
        and isinstance(sub.value, ast.Attribute)
        and sub.value.attr == "mark"
        for sub in ast.walk(node)
    )


def test_no_integration_marked_test_lives_under_tests_unit() -> None:
    """No module under tests/unit marks a test (or a parameter) ``integration``."""
    offenders = [
        str(path.relative_to(TESTS))
        for path in sorted((TESTS / "unit").rglob("*.py"))
        if _marks_integration(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert offenders == [], f"move these integration tests to tests/integration: {offenders}"


def test_every_module_under_tests_integration_is_marked_integration() -> None:
    """Every test module under tests/integration sets a module-wide ``integration`` mark."""
    unmarked = []
    for path in sorted((TESTS / "integration").glob("test_*.py")):
        module = ast.parse(path.read_text(encoding="utf-8"))
        marks = [
            node.value
            for node in module.body
            if isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets)
        ]
        if not any(_marks_integration(mark) for mark in marks):
            unmarked.append(path.name)
    assert unmarked == [], f"add pytestmark = pytest.mark.integration to: {unmarked}"
