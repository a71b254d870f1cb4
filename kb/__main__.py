"""The `kb` command (also `python -m kb`): kb.cli's commands, with apps from kb.create_app.

It lives apart from kb.cli because the factory adds kb.cli's commands to every app: kb imports kb.cli, and only
this module, which nothing imports, knows both."""
from __future__ import annotations

from kb import cli, create_app


def main() -> None:
    cli.main(create_app)


if __name__ == "__main__":
    main()
