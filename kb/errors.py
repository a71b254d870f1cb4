"""Domain errors: one class per failure a user can cause. The web layer maps each to a status and a message."""
from __future__ import annotations

from typing import Any


class KBError(Exception):
    status = 400
    message = "The request could not be completed."

    def __init__(self, message: str | None = None, details: Any = None):
        super().__init__(message or self.message)
        self.message = message or self.message
        self.details = details


class NotFound(KBError):
    status = 404
    message = "There is no page here."


class NotSignedIn(KBError):
    status = 401
    message = "Please sign in first."


class NotAllowed(KBError):
    status = 403
    message = "You are not allowed to do that."


class InvalidFields(KBError):
    """One or more fields are invalid; `details` maps each field name to a message."""

    status = 422
    message = "Some fields are not valid."

    def __init__(self, errors: dict[str, str], message: str | None = None):
        super().__init__(message or f"{self.message} Check: {', '.join(errors)}.", errors)
        self.errors = errors


class EditConflict(KBError):
    """The page changed since the editor loaded it. `current` is the newest revision number, `diff` the change."""

    status = 409
    message = "Someone else saved this page after you started editing."

    def __init__(self, current: int, diff: str = "", message: str | None = None):
        super().__init__(message, {"current_revision": current, "diff": diff})
        self.current = current
        self.diff = diff


class BadParameter(KBError):
    """A number or choice in a query string, form or JSON body that cannot be used; `name` says which."""

    status = 400

    def __init__(self, name: str, problem: str):
        super().__init__(f"Bad parameter {name}: {problem}", {name: problem})
        self.name, self.problem = name, problem


class StorageFull(KBError):
    """The database (or the disk under it) is full: the change was rolled back, and saving works again once an
    administrator frees space."""

    status = 507
    message = ("The server has run out of storage space, so nothing was saved. Please tell your administrator; "
               "your text is still here.")


class TooLarge(KBError):
    status = 413
    message = "That is too large."


class ImportFailed(KBError):
    """A file in an import is bad; nothing was written. `where` names the file (and line when known)."""

    status = 422

    def __init__(self, where: str, problem: str):
        super().__init__(f"{where}: {problem}", {"where": where, "problem": problem})
        self.where = where
        self.problem = problem
