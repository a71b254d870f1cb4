"""Production serving with gunicorn: the app is built once, then forked into worker processes."""
from __future__ import annotations

from flask import Flask
from gunicorn.app.base import BaseApplication


class _Server(BaseApplication):
    def __init__(self, app: Flask, options: dict):
        self.application, self.options = app, options
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        return self.application


def _post_fork(_server, worker):
    # Connections opened before the fork must not be shared between processes.
    app = worker.app.application
    app.extensions["kb_db"].dispose()


def serve(app: Flask, host: str, port: int, workers: int = 2, threads: int = 1) -> None:
    options = {
        "bind": f"{host}:{port}",
        "workers": max(1, workers),
        "threads": max(1, threads),
        "worker_class": "gthread" if threads > 1 else "sync",
        "timeout": 60,
        "graceful_timeout": 10,
        "accesslog": "-",
        # Query strings can carry tokens (feeds); log the path only.
        "access_log_format": '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms',
        "post_fork": _post_fork,
    }
    _Server(app, options).run()
