"""Every setting the knowledge base reads, in one place: the `KB_*` environment variables an operator sets, and the
internal keys that tests and commands set in the app's config.

`load(test_config)` gives the app its configuration: each setting's default, then its environment variable (if it
has one), then `test_config`. A value that cannot be read stops start-up with a `ConfigError` naming the variable
and what it should look like; no other module reads `os.environ` for `KB_*` variables.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from kb import resources


class ConfigError(Exception):
    """A setting whose value cannot be used; the message says which and what to do."""


def _flag(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise ValueError("use 1 or 0")


def _whole(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError("use a whole number") from None


def _count(text: str) -> int:
    value = _whole(text)
    if value < 0:
        raise ValueError("use 0 or a positive whole number")
    return value


def _port(text: str) -> int:
    value = _whole(text)
    if not 0 < value < 65536:
        raise ValueError("use a port number between 1 and 65535")
    return value


@dataclass(frozen=True)
class Setting:
    key: str  # the app.config key
    env: str | None  # the environment variable an operator sets it with, if any
    default: Any
    doc: str
    parse: Callable[[str], Any] = str


SETTINGS: tuple[Setting, ...] = (
    # Set by operators
    Setting("DATA_DIR", "KB_DATA_DIR", None,
            "Folder for the SQLite database, the search index and the generated secret key (default: instance/)."),
    Setting("DATABASE_URL", "KB_DATABASE_URL", None,
            "`sqlite:///PATH` or `postgresql://USER:PASSWORD@HOST:PORT/DATABASE` (default: SQLite in "
            "DATA_DIR; see Databases and several hosts)."),
    Setting("SECRET_KEY", "KB_SECRET_KEY", None,
            "Signs sessions; every host of one site needs the same (default: generated once in DATA_DIR)."),
    Setting("ANONYMOUS_READ", "KB_ANONYMOUS_READ", False,
            "1 lets visitors who are not signed in read public pages.", _flag),
    Setting("SECURE_COOKIES", "KB_SECURE_COOKIES", False,
            "1 marks cookies Secure always (they are marked Secure on HTTPS requests anyway).", _flag),
    Setting("PROXY_FIX", "KB_PROXY_FIX", 0,
            "Number of reverse proxies in front whose X-Forwarded-* headers are trusted.", _count),
    Setting("ADMIN_PASSWORD", "KB_ADMIN_PASSWORD", None,
            "Password of the `admin` account created on first run (default: generated and printed once)."),
    Setting("PORT", "KB_PORT", 5000, "Port `kb serve` listens on when --port is not given.", _port),
    Setting("PROGRESS", "KB_PROGRESS", False,
            "1 shows progress bars of long commands even when standard error is not a terminal.", _flag),
    # Set by tests and commands
    Setting("CONTENT_DIR", None, None, "The corpus `kb init` imports on first run (default: the bundled content/)."),
    Setting("CLOCK", None, None, "A function returning the current naive UTC time (tests fix the date)."),
    Setting("SEARCH_BACKGROUND", None, True, "Whether a server process may run the search index worker thread."),
    Setting("SEARCH_WORKER", None, None,
            "Whether saves leave indexing to the worker (True) or index before returning (False); default: True "
            "except under TESTING."),
    Setting("SEARCH_SYNC_REBUILD_LIMIT", None, 5000,
            "At start-up, a missing or damaged index of up to this many pages is rebuilt before serving."),
    Setting("VIEW_CACHE_ROWS", None, 100_000, "How many stored page renderings the database keeps at most."),
)

# Flask's own settings, fixed for this application.
FLASK_DEFAULTS = {
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "REMEMBER_COOKIE_HTTPONLY": True,
    "REMEMBER_COOKIE_SAMESITE": "Lax",
    "WTF_CSRF_TIME_LIMIT": None,
    "WTF_CSRF_CHECK_DEFAULT": False,  # kb.web.security checks every write that is not made with an API token
    # The API answers 413 itself for bodies over 1 MiB; this stops anything absurd before it is read.
    "MAX_CONTENT_LENGTH": 4 * 1024 * 1024,
}


def from_environment(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The settings given by environment variables (unset and empty ones are left out)."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = environ.get(setting.env) if setting.env else None
        if raw is None or raw == "":
            continue
        try:
            values[setting.key] = setting.parse(raw)
        except ValueError as e:
            raise ConfigError(f"{setting.env}={raw!r} cannot be used: {e}. {setting.doc}") from None
    return values


def load(test_config: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The whole configuration of one app: defaults, then the environment, then `test_config`."""
    config: dict[str, Any] = dict(FLASK_DEFAULTS)
    config.update({s.key: s.default for s in SETTINGS})
    config.update(from_environment(environ))
    config.update(test_config or {})
    data_dir = Path(config["DATA_DIR"] or resources.default_data_dir()).resolve()
    config["DATA_DIR"] = str(data_dir)
    config["DATABASE_URL"] = config["DATABASE_URL"] or f"sqlite:///{data_dir / 'kb.sqlite3'}"
    config["CONTENT_DIR"] = str(config["CONTENT_DIR"] or resources.folder("content"))
    if config["SECURE_COOKIES"]:
        config["SESSION_COOKIE_SECURE"] = True
        config["REMEMBER_COOKIE_SECURE"] = True
    return config


def environment_table() -> str:
    """The operator's settings as a Markdown table (the README's configuration section is this table)."""
    rows = ["| variable | what it does |", "| --- | --- |"]
    rows += [f"| `{s.env}` | {s.doc} |" for s in SETTINGS if s.env]
    return "\n".join(rows)
