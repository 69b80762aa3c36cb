"""Celery worker and beat: configuration (:mod:`.config`), the app (:mod:`.celery_app`), the tasks
(:mod:`.tasks`), the proactive scan (:mod:`.scan`) and the embedded all-in-one (:mod:`.embedded`).

``celery -A freshtoken.worker worker`` works: Celery finds the app in :mod:`.celery`, which builds
it from the environment when Celery imports it; importing this package has no side effects.
"""
