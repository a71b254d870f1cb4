"""Keeping passwords, tokens and invitation secrets out of every log line (access logs show paths such as
/invite/<secret>)."""
from __future__ import annotations

import logging
import re

from flask import Flask

# (words, pattern, replacement): a pattern can only match text holding one of its words (in any case). Most log
# lines, such as each request's access line, hold none, and are let through after one search for all the words.
_SECRET_PATTERNS = [
    (("/invite/",), re.compile(r"(/invite/)[^\s?#\"'/]+"), r"\1[redacted]"),
    (("bearer",), re.compile(r"(?i)\b(bearer\s+)[^\s\"',]+"), r"\1[redacted]"),
    (("token", "password", "passwd", "secret", "api_key"),
     re.compile(r"(?i)\b((?:[a-z_]*token|password|passwd|secret|api_key|csrf_token)=)[^&\s\"']+"), r"\1[redacted]"),
    (("kb_",), re.compile(r"\bkb_[A-Za-z0-9_-]{16,}"), "kb_[redacted]"),
]
_MAY_HOLD_SECRET = re.compile("|".join(re.escape(w) for words, _, _ in _SECRET_PATTERNS for w in words), re.I)


def redact(text: str) -> str:
    """The text with anything that looks like a password, token or invitation secret replaced."""
    if not _MAY_HOLD_SECRET.search(text):
        return text
    for _, pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecrets(logging.Filter):
    """Keeps passwords and tokens out of log lines (access logs show paths such as /invite/<secret>)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is the logger's problem, not ours
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


_REDACT = RedactSecrets()
LOGGERS = ("werkzeug", "gunicorn.access", "gunicorn.error", "kb")


def init_app(app: Flask) -> None:
    for logger in [app.logger, *(logging.getLogger(name) for name in LOGGERS)]:
        if _REDACT not in logger.filters:
            logger.addFilter(_REDACT)
