"""The app ``celery -A freshtoken.worker`` finds (Celery looks for ``<package>.celery.app``).

Built from the environment when imported, which only the ``celery`` command does: the rest of
freshtoken builds its app with :func:`freshtoken.worker.celery_app.create_celery`.
"""

from __future__ import annotations

from freshtoken.bootstrap import settings_from_env
from freshtoken.worker.celery_app import FreshtokenCelery, create_celery

app: FreshtokenCelery = create_celery(settings_from_env())
