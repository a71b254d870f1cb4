"""Settings (kb.config): read from the environment in one place, bad values refused with a clear message."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from kb import config

ROOT = Path(__file__).resolve().parent.parent


def test_environment_overrides_defaults_and_test_config_overrides_both(tmp_path):
    loaded = config.load({"PORT": 6000}, environ={"KB_DATA_DIR": str(tmp_path), "KB_PORT": "7000",
                                                    "KB_ANONYMOUS_READ": "yes", "KB_PROXY_FIX": "2"})
    assert loaded["DATA_DIR"] == str(tmp_path.resolve())
    assert loaded["DATABASE_URL"] == f"sqlite:///{tmp_path.resolve() / 'kb.sqlite3'}"
    assert loaded["ANONYMOUS_READ"] is True and loaded["PROXY_FIX"] == 2
    assert loaded["PORT"] == 6000


def test_secure_cookies_mark_both_cookies_secure(tmp_path):
    loaded = config.load(environ={"KB_DATA_DIR": str(tmp_path), "KB_SECURE_COOKIES": "1"})
    assert loaded["SESSION_COOKIE_SECURE"] and loaded["REMEMBER_COOKIE_SECURE"]


@pytest.mark.parametrize("variable, value, says", [
    ("KB_PROXY_FIX", "two", "whole number"),
    ("KB_PROXY_FIX", "-1", "positive"),
    ("KB_PORT", "70000", "between 1 and 65535"),
    ("KB_ANONYMOUS_READ", "perhaps", "1 or 0"),
])
def test_a_bad_value_names_the_variable_and_what_to_use(tmp_path, variable, value, says):
    with pytest.raises(config.ConfigError) as caught:
        config.load(environ={"KB_DATA_DIR": str(tmp_path), variable: value})
    assert variable in str(caught.value) and says in str(caught.value)


def test_the_command_line_says_one_line_and_exits_1_on_a_bad_value(tmp_path):
    kb = Path(sys.executable).parent / "kb"
    result = subprocess.run([str(kb), "check"], capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "KB_DATA_DIR": str(tmp_path), "KB_PORT": "port"})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "KB_PORT" in result.stderr and "Traceback" not in result.stderr


def test_no_other_module_reads_kb_variables():
    reading = re.compile(r"""(environ(\.get)?[\[(]|getenv\()\s*["']KB_""")
    readers = [p.relative_to(ROOT).as_posix() for p in (ROOT / "kb").rglob("*.py") if reading.search(p.read_text())]
    assert readers == []  # kb/config.py reads them by each Setting's name, in one loop


def test_the_readme_lists_every_setting_as_the_module_documents_it():
    assert config.environment_table() in (ROOT / "README.md").read_text()
