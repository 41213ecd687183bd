"""What runs the app under gunicorn, besides its settings (gunicorn.conf.py): the master's start-up and
clean-up (master.py), the metrics directory's care (metrics_dir.py), the worker classes (cooperative.py,
threaded.py) and the JSON answer to gunicorn's own refusals (refusals.py)."""
