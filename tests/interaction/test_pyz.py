"""The one-file pyz starts fast: bytecode inside (for the build Python), none of the
packages halfopen never imports (pygments, markdown-it-py, mdurl), and still a full
traceback with --debug. Start-up figures: bench/startup.py, BENCHMARKS.md."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BARE_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
PYENV = Path(os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))) / "versions"
OTHERS = [p for v in ("3.9", "3.13") for p in sorted(glob.glob(str(PYENV / f"{v}.*/bin/python3")))[-1:]]


@pytest.fixture(scope="module")
def pyz() -> str:
    given = os.environ.get("HALFOPEN_TEST_PYZ")
    if given and os.path.exists(given):
        return given
    proc = subprocess.run(["./scripts/build-pyz"], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stderr[-2000:]
    target = os.path.join(tempfile.mkdtemp(prefix="halfopen-pyz-"), "halfopen.pyz")
    shutil.copy(REPO / "dist" / "halfopen.pyz", target)
    return target


def test_bytecode_inside_and_no_unused_packages(pyz):
    names = zipfile.ZipFile(pyz).namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert not {"pygments", "markdown_it", "mdurl"} & tops, sorted(tops)
    sources = [n for n in names if n.endswith(".py")]
    # zipimport reads a .pyc beside its .py: every module has one
    missing = [n for n in sources if n + "c" not in names]
    assert not missing, missing[:10]
    assert not any("__pycache__" in n for n in names)


def test_runs_and_debug_still_shows_a_traceback(pyz, tmp_path):
    for args in (["--version"], ["sockets", "state", "listening"], ["--man"]):
        r = subprocess.run([sys.executable, "-S", pyz, *args], capture_output=True, text=True,
                           timeout=120, env=BARE_ENV)
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    saved = tmp_path / "snap.json"
    r = subprocess.run([sys.executable, "-S", pyz, "doctor", "--window", "0", "--save-snapshot",
                        str(saved)], capture_output=True, text=True, timeout=120, env=BARE_ENV)
    assert saved.exists(), r.stderr
    # an internal error inside the pyz (-S: nothing from site-packages, pygments absent)
    inject = (f"import sys; sys.path.insert(0, {pyz!r})\n"
              "import halfopen.diagnose.report as rep\n"
              "def broken(*a, **k): raise TypeError('injected')\n"
              "rep.diagnose = broken\n"
              "from halfopen.cli.main import main; sys.exit(main(sys.argv[1:]))")
    for debug in (True, False):
        argv = [sys.executable, "-S", "-c", inject, *(["--debug"] if debug else []),
                "doctor", "--snapshot", str(saved)]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=BARE_ENV)
        if debug:
            assert "Traceback (most recent call last)" in r.stderr, r.stderr
            assert r.stderr.rstrip().endswith("TypeError: injected"), r.stderr[-500:]
            assert "pygments" not in r.stderr
        else:
            assert r.returncode == 3 and r.stderr.count("\n") == 1, r.stderr
    r = subprocess.run([sys.executable, "-S", "-c", f"import sys; sys.path.insert(0, {pyz!r}); "
                        "import rich.syntax"], capture_output=True, text=True, timeout=60)
    assert "No module named 'pygments'" in r.stderr  # it is really left out


@pytest.mark.parametrize("python", OTHERS or ["/nonexistent/python3.9"])
def test_other_pythons_compile_the_source_instead(pyz, python):
    """Bytecode of another version is ignored by zipimport (magic number): the source runs."""
    if not os.path.exists(python):
        pytest.skip("no other supported Python here")
    r = subprocess.run([python, "-S", pyz, "sockets", "state", "listening"], capture_output=True,
                       text=True, timeout=120, env=BARE_ENV)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert r.stdout.startswith("State")
