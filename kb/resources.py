"""Where the files that come with the product are: templates, static files and the bundled content."""
from __future__ import annotations

from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent


def templates_dir() -> Path:
    return CHECKOUT / "templates"


def static_dir() -> Path:
    return CHECKOUT / "static"


def content_dir() -> Path:
    return CHECKOUT / "content"


def default_data_dir() -> Path:
    """`instance/` in the checkout (where scripts/serve keeps its data)."""
    return CHECKOUT / "instance"
