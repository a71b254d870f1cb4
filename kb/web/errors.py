"""Errors as the person sees them: domain errors (kb.errors), expired forms and HTTP errors become a status and a
human message, in HTML or JSON as the request wants, here and nowhere else."""
from __future__ import annotations

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from kb.db import is_storage_full
from kb.errors import KBError, StorageFull


RETRY_AFTER_SECONDS = 5  # how long to tell clients to wait when the database is not answering
UNAVAILABLE_PAGE = ("<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>Try again in a moment</title>"
                    "<h1>Try again in a moment</h1><p>{message}</p></html>")


def database_unavailable(error: BaseException) -> bool:
    """Is this the database not answering (server down or restarting, connection lost, every connection busy),
    rather than a mistake in a statement? SQLAlchemy's errors and the drivers' own (PEP 249 names) both count."""
    if isinstance(error, PoolTimeout):
        return True
    orig = error.orig if isinstance(error, (OperationalError, InterfaceError)) else error
    names = {cls.__name__ for cls in type(orig).__mro__}
    if not {"OperationalError", "InterfaceError"} & names:
        return False
    driver = type(orig).__module__.split(".")[0]
    if driver == "sqlite3":  # SQLite says OperationalError for mistakes in statements too
        return any(w in str(orig) for w in ("database is locked", "unable to open", "disk I/O"))
    return driver in ("psycopg", "psycopg2")


def wants_json() -> bool:
    return request.path.startswith("/api/") or (
        request.accept_mimetypes.best == "application/json" and not request.accept_mimetypes.accept_html)


def error_response(status: int, message: str, details=None):
    if wants_json():
        return jsonify({"error": message, "details": details}), status
    return render_template("error.html", status=status, message=message, details=details), status


def init_app(app: Flask) -> None:
    @app.errorhandler(KBError)
    def _kb_error(e: KBError):
        return error_response(e.status, e.message, e.details)

    @app.errorhandler(CSRFError)
    def _csrf_error(e: CSRFError):
        return error_response(400, "This form has expired or was not sent from this site. Please try again.",
                              {"csrf": e.description})

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException):
        messages = {404: "There is no page here.", 405: "That action is not available here.",
                    413: "That is too large.", 400: "The request could not be understood."}
        return error_response(e.code or 500, messages.get(e.code or 500, e.description or e.name))

    @app.errorhandler(Exception)
    def _crash(e: Exception):
        if is_storage_full(e):  # a file outside the database (the index, a key) could not be written
            app.logger.error("storage full on %s %s: %s", request.method, request.path, e)
            return error_response(StorageFull.status, StorageFull.message)
        if database_unavailable(e):
            return _database_away(e)
        app.logger.exception("Unhandled error on %s %s", request.method, request.path)
        return error_response(500, "Something went wrong on our side. Nothing was changed.")

    def _database_away(e: Exception):
        # The database server went away (or every connection is busy): nothing was changed, the transaction rolled
        # back, and a later request reconnects by itself (the pool checks a connection before handing it out).
        reason = (str(getattr(e, "orig", None) or e).strip().splitlines() or [type(e).__name__])[0]
        app.logger.warning("Database unavailable on %s %s: %s", request.method, request.path, reason)
        message = "The database is not answering just now. Nothing was changed; please try again in a moment."
        if wants_json():
            response = jsonify({"error": message, "details": {"retry_after": RETRY_AFTER_SECONDS}})
        else:  # no template: the page layout would look up the signed-in user, in the database
            response = app.make_response(UNAVAILABLE_PAGE.format(message=message))
        response.status_code = 503
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
