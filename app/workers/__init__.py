"""Celery entry points: `celery -A app.workers.celery_app worker|beat|flower`.

Tasks here stay a few lines each and call `app.monitoring` / `app.alerts`, which know
nothing of Celery; the embedded runner drives the same functions without a broker.
"""
