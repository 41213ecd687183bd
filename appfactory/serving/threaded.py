"""gunicorn's threaded worker (GUNICORN_WORKER_CLASS=gthread): a request holds an OS thread throughout."""

from gunicorn.workers.gthread import ThreadWorker

from appfactory.serving.refusals import JsonRefusals


class ThreadedWorker(JsonRefusals, ThreadWorker):
    """gthread, with gunicorn's own refusals in the JSON envelope."""
