"""Where the templates, static files and bundled content are, in a source checkout and in an installed wheel.

The repository keeps `templates/`, `static/` and `content/` at its top level, beside `kb/`; a wheel carries them
inside the package as `kb/templates`, `kb/static` and `kb/content` (see `[tool.setuptools]` in pyproject.toml).
An editable install runs from the checkout, so it finds them at the top level too.
"""
from __future__ import annotations

from pathlib import Path

FOLDERS = ("templates", "static", "content")
_PACKAGE = Path(__file__).resolve().parent


def folder(name: str) -> Path:
    """The folder `templates`, `static` or `content`: inside the package when installed, else beside it."""
    if name not in FOLDERS:
        raise ValueError(f"{name!r} is not one of {', '.join(FOLDERS)}")
    inside = _PACKAGE / name
    return inside if inside.is_dir() else _PACKAGE.parent / name


def default_data_dir() -> Path:
    """Where an instance keeps its data unless KB_DATA_DIR says otherwise: `instance/` beside the package in a
    checkout (where scripts/serve keeps it), `./instance` for an installed package."""
    checkout = _PACKAGE.parent
    if (checkout / "pyproject.toml").is_file() and not (_PACKAGE / "templates").is_dir():
        return checkout / "instance"
    return Path.cwd() / "instance"
