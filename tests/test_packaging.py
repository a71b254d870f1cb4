"""A plain `pip install .` serves the knowledge base: the wheel carries the templates, static files and bundled
content inside the package, and nothing of the source checkout is needed once it is installed.

The module builds a wheel from a copy of the sources, installs it into a new virtual environment, and runs `kb init`
and `kb serve` from that environment in an empty folder. It takes about 10 seconds (under a minute on a busy
machine); `-m "not packaging"` leaves it out.
"""
from __future__ import annotations

import http.client
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from benchmarks.bench import free_port, wait_for

pytestmark = pytest.mark.packaging

SOURCE = Path(__file__).resolve().parent.parent
# What a build reads. The copy keeps the build's own files (build/, *.egg-info) out of the checkout.
BUILD_INPUTS = ("pyproject.toml", "README.md", "kb", "templates", "static", "content")


def run(*args, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, **kwargs)
    assert done.returncode == 0, f"{' '.join(map(str, args))} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src, dist = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("dist")
    for name in BUILD_INPUTS:
        if (SOURCE / name).is_dir():
            shutil.copytree(SOURCE / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif (SOURCE / name).exists():
            shutil.copy2(SOURCE / name, src / name)
    # With build isolation, as `pip install .` does: pip fetches the setuptools that pyproject.toml asks for.
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", dist, src)
    (built,) = dist.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A new virtual environment with the wheel installed; returns its bin folder.

    The dependencies are the ones this test run already has (a .pth file adds its site-packages after the new
    environment's own), so no download is needed and `kb` can only come from the wheel: the running environment
    has kb as an editable install, whose import hook is set up by a .pth file that a path added this way does
    not run."""
    venv = tmp_path_factory.mktemp("venv")
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    (site / "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "--quiet", wheel)
    return venv / "bin"


def test_the_wheel_carries_the_folders_and_no_benchmarks(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for folder in ("templates", "static", "content"):
        on_disk = {p.relative_to(SOURCE).as_posix() for p in (SOURCE / folder).rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts}
        assert on_disk and {f"kb/{p}" for p in on_disk} <= set(names), f"{folder}/ is not all in the wheel"
    assert not [n for n in names if n.startswith("benchmarks/") or n.startswith("kb/bench")]


def test_an_installed_wheel_serves_pages_with_their_stylesheets(installed, tmp_path):
    workdir, data, home = tmp_path / "elsewhere", tmp_path / "data", tmp_path / "home"
    for d in (workdir, data, home):
        d.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "KB_", "VIRTUAL_ENV"))}
    env.update(KB_DATA_DIR=str(data), KB_ADMIN_PASSWORD="packaged-admin-password", KB_ANONYMOUS_READ="1",
               HOME=str(home), PATH=f"{installed}{os.pathsep}{env.get('PATH', '')}")
    env.pop("XDG_RUNTIME_DIR", None)

    where = run(installed / "python", "-c", "import kb, kb.resources as r; print(kb.__file__); "
                "print(*(r.folder(n) for n in r.FOLDERS), sep='\\n')", cwd=workdir, env=env).stdout.split()
    venv = installed.parent.resolve()
    assert all(Path(p).resolve().is_relative_to(venv) for p in where), where  # the wheel, not the checkout

    init = run(installed / "kb", "init", cwd=workdir, env=env)
    assert "Imported the bundled knowledge base" in init.stdout

    port = free_port()
    server = subprocess.Popen([installed / "kb", "serve", "--port", str(port), "--workers", "1"], cwd=workdir,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(port, "/healthz", timeout=60)
        status, _, page = get(port, "/wiki/writing-assessment-case")
        assert status == 200 and "amalgam" in page  # a bundled page, through the packaged templates
        sheets = re.findall(r'<link rel="stylesheet" href="([^"]+)"', page)
        assert sheets, "the page links no stylesheet"
        for href in sheets:
            status, headers, body = get(port, href)
            assert status == 200 and headers["Content-Type"].startswith("text/css"), href
            name = href.split("?")[0].removeprefix("/static/")
            assert body == (SOURCE / "static" / name).read_text(encoding="utf-8")
    finally:
        server.terminate()
        _, errors = server.communicate(timeout=30)
    assert "Traceback" not in errors, errors[-3000:]
    assert not list(workdir.iterdir())  # everything went to the data directory


def get(port: int, path: str) -> tuple[int, dict, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path)
    r = conn.getresponse()
    return r.status, dict(r.getheaders()), r.read().decode("utf-8")
