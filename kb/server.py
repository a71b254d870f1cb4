"""Production serving with gunicorn: the app is built once, then forked into worker processes."""
from __future__ import annotations

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.config import Config
from gunicorn.glogging import Logger

ACCESS_LOG_FORMAT = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'


# Quotes, backslashes and control characters in logged values (a path can hold %22 or %0A) are escaped, so every
# request stays one unambiguous line.
_LOG_ESCAPES = {**{c: f"\\x{c:02x}" for c in (*range(32), *range(127, 160))}, 0x2028: "\\u2028", 0x2029: "\\u2029",
                ord('"'): '\\"', ord("\\"): "\\\\"}


def _log_text(value) -> str:
    """A WSGI string (bytes as Latin-1) as the text it encodes, escaped for one log line."""
    text = str(value)
    try:
        text = text.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:
        pass
    return text.translate(_LOG_ESCAPES)


class AccessLogger(Logger):
    """Gunicorn's logger, computing only the fields our access line shows, once.

    Gunicorn's own builds every field its format language offers for each request (every request and response
    header, the whole environ, a formatted date), then formats the line twice; that cost more than a stored page
    view's database reads. Query strings are left out of the line because they can carry tokens (feeds).
    """

    def atoms(self, resp, req, environ, request_time):
        sent = getattr(resp, "sent", None)
        return {
            "h": environ.get("REMOTE_ADDR", "-"),
            "m": _log_text(environ.get("REQUEST_METHOD", "-")),
            "U": _log_text(environ.get("PATH_INFO", "")),
            "s": str(resp.status).split(None, 1)[0],
            "b": str(sent) if sent is not None else "-",
            "M": request_time.seconds * 1000 + request_time.microseconds // 1000,
        }

    def access(self, resp, req, environ, request_time):
        if not getattr(self, "access_log_enabled", True):  # older gunicorn: a logger with no handler drops it
            return
        try:
            line = self.cfg.access_log_format % self.atoms(resp, req, environ, request_time)
        except (KeyError, TypeError, ValueError):  # a format asking for more: gunicorn's way, missing fields as "-"
            return super().access(resp, req, environ, request_time)
        self.access_log.info(line)  # no arguments: a "%" in the path is only text


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
        "access_log_format": ACCESS_LOG_FORMAT,
        "logger_class": AccessLogger,
        "post_fork": _post_fork,
    }
    if "control_socket_disable" in Config().settings:
        # Newer gunicorn opens a control socket in the user's home directory by default; kb serve does not offer
        # it, and two instances on one machine would take it from each other.
        options["control_socket_disable"] = True
    _Server(app, options).run()
