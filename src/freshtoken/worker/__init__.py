"""Celery worker and beat. ``celery -A freshtoken.worker worker`` works: ``app`` is built lazily
from the environment on first access, so importing this package has no side effects.
"""

from __future__ import annotations

from typing import Any

__all__ = ["app"]


def __getattr__(name: str) -> Any:
    if name in ("app", "celery"):
        from freshtoken.bootstrap import settings_from_env
        from freshtoken.worker.celery_app import create_celery

        app = create_celery(settings_from_env())
        globals()["app"] = globals()["celery"] = app
        return app
    raise AttributeError(name)
