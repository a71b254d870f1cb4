"""Errors as the person sees them: domain errors (kb.errors), expired forms and HTTP errors become a status and a
human message, in HTML or JSON as the request wants, here and nowhere else."""
from __future__ import annotations

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from kb.db import is_storage_full
from kb.errors import KBError, StorageFull


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
        app.logger.exception("Unhandled error on %s %s", request.method, request.path)
        return error_response(500, "Something went wrong on our side. Nothing was changed.")
