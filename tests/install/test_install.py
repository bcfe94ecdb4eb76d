"""What a user installs: the wheel in a venv, the one-file pyz on every supported
Python with a bare PATH, scripts/install into a venv of its own, halfopen(8).

scripts/test runs the suite with HALFOPEN_TEST_WHEEL=1 from a fresh venv that
holds the built wheel, and HALFOPEN_TEST_PYZ naming the pyz it built.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BARE_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
PYENV = Path(os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))) / "versions"


def _pythons(*versions: str) -> list[str]:
    found = []
    for v in versions:
        paths = sorted(glob.glob(str(PYENV / f"{v}.*" / "bin" / "python3")))
        if paths:
            found.append(paths[-1])
    return found


SUPPORTED = ["/usr/bin/python3", *_pythons("3.9", "3.10", "3.12", "3.13")]
TOO_OLD = _pythons("3.8", "3.7")


def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    kw.setdefault("timeout", 120)
    return subprocess.run(argv, capture_output=True, text=True, **kw)


def assert_clean(proc: subprocess.CompletedProcess, codes: tuple[int, ...] = (0,)) -> None:
    assert proc.returncode in codes, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.skipif(os.environ.get("HALFOPEN_TEST_WHEEL") != "1", reason="only in scripts/test's wheel venvs")
def test_the_suite_runs_on_the_installed_wheel_in_an_isolated_venv():
    import halfopen

    where = Path(halfopen.__file__).resolve()
    assert REPO / "src" not in where.parents, f"halfopen imported from the checkout: {where}"
    assert sys.prefix != sys.base_prefix, "not a virtual environment"
    cfg = (Path(sys.prefix) / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in cfg
    assert Path(sys.prefix) in where.parents
    assert not list(Path(sys.prefix).glob("lib/python*/site-packages/__editable__*halfopen*"))
    # the console script is the venv's
    assert Path(shutil.which("halfopen") or "").parent == Path(sys.prefix) / "bin"


@pytest.mark.parametrize(
    "args, codes",
    [(["--version"], (0,)), (["sockets", "state", "listening"], (0,)), (["doctor", "--window", "0"], (0, 1, 2))],
)
def test_installed_commands(args, codes):
    # the doctor's verdict is the host's; only "could not check" (3) or a crash fail
    command = shutil.which("halfopen")
    assert command, "the halfopen command is on PATH where halfopen is installed"
    assert_clean(run([command, *args]), codes)
    assert_clean(run([sys.executable, "-m", "halfopen", *args]), codes)


@pytest.fixture(scope="module")
def pyz() -> str:
    given = os.environ.get("HALFOPEN_TEST_PYZ")
    if given and os.path.exists(given):
        return given
    out = tempfile.mkdtemp(prefix="halfopen-pyz-")
    proc = run(["./scripts/build-pyz"], cwd=REPO, timeout=600, env={**os.environ, "PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stderr[-2000:]
    target = os.path.join(out, "halfopen.pyz")
    shutil.copy(REPO / "dist" / "halfopen.pyz", target)
    return target


@pytest.mark.parametrize("python", SUPPORTED)
def test_pyz_runs_on_every_supported_python_with_nothing_installed(pyz, python):
    if not os.path.exists(python):
        pytest.fail(f"{python} is a supported interpreter and should be on this machine")
    # -S: no site-packages at all, so everything must come from the pyz itself
    for args, codes in ((["--version"], (0,)), (["sockets", "state", "listening"], (0,)),
                        (["doctor", "--window", "0"], (0, 1, 2))):
        proc = run([python, "-S", pyz, *args], env=BARE_ENV)
        assert_clean(proc, codes)
    assert "halfopen, version" in run([python, "-S", pyz, "--version"], env=BARE_ENV).stdout


@pytest.mark.parametrize("python", TOO_OLD or ["/nonexistent/python3.8"])
def test_pyz_on_an_old_python_says_the_minimum_in_one_line(pyz, python):
    if not os.path.exists(python):
        pytest.skip("no Python older than 3.9 on this machine")
    proc = run([python, pyz, "doctor"], env=BARE_ENV)
    assert proc.returncode == 3
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "needs Python 3.9 or newer" in proc.stderr, proc.stderr


def test_man_page_is_current_and_renders():
    page = run([sys.executable, "-m", "halfopen", "--man"])
    assert_clean(page)
    assert page.stdout == (REPO / "docs" / "halfopen.8").read_text(), "run `make man`"
    for command in ("sockets", "doctor", "fix", "kill", "keepalive", "watch", "exporter", "report", "lab"):
        assert f".SS halfopen {command} " in page.stdout
    if shutil.which("man"):
        shown = run(["man", "-l", "-"], input=page.stdout, env={**BARE_ENV, "MANWIDTH": "100"})
        assert shown.returncode == 0 and "EXIT STATUS" in shown.stdout
        assert "warning" not in shown.stderr.lower(), shown.stderr


def test_shell_completion_lists_the_commands():
    command = shutil.which("halfopen")
    assert command, "the halfopen command is on PATH where halfopen is installed"
    proc = run([command], env={**os.environ, "_HALFOPEN_COMPLETE": "bash_complete",
                               "COMP_WORDS": "halfopen do", "COMP_CWORD": "1"})
    assert proc.returncode == 0
    assert "plain,doctor" in proc.stdout


# -- scripts/install: a venv of its own, nothing it did not make -----------------------


def install(tmp: Path, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "PREFIX": str(tmp / "opt" / "halfopen"), "BINDIR": str(tmp / "bin"),
            "MANDIR": str(tmp / "share" / "man"), "PYTHON": "/usr/bin/python3", **env}
    return run(["./scripts/install"], cwd=REPO, env=full, timeout=600)


def test_install_into_its_own_venv_links_the_command_and_refuses_what_it_did_not_make(tmp_path):
    proc = install(tmp_path)
    assert proc.returncode == 0, proc.stderr
    link = tmp_path / "bin" / "halfopen"
    assert os.readlink(link) == str(tmp_path / "opt" / "halfopen" / "bin" / "halfopen")
    assert_clean(run([str(link), "--version"]))
    # halfopen(8) is where man looks for the commands of BINDIR (BINDIR/../share/man),
    # a link to the venv's page (man -w names the page it resolves to); without the link,
    # man finds nothing
    venv_page = tmp_path / "opt" / "halfopen" / "share" / "man" / "man8" / "halfopen.8"
    manlink = tmp_path / "share" / "man" / "man8" / "halfopen.8"
    assert os.readlink(manlink) == str(venv_page)
    assert man_finds(tmp_path) == venv_page
    manlink.unlink()
    assert man_finds(tmp_path, found=False) is None
    # again: an upgrade in place, same link
    assert install(tmp_path).returncode == 0
    # a PREFIX someone else made is refused, and left as it was
    other = tmp_path / "other"
    other.mkdir()
    (other / "theirs").write_text("x")
    proc = install(tmp_path, PREFIX=str(other))
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "not made by this script" in proc.stderr
    assert sorted(p.name for p in other.iterdir()) == ["theirs"]
    # a command of the same name that is not our link is refused
    (tmp_path / "bin2").mkdir()
    (tmp_path / "bin2" / "halfopen").write_text("#!/bin/sh\n")
    proc = install(tmp_path, BINDIR=str(tmp_path / "bin2"))
    assert proc.returncode == 1 and "is not halfopen's link" in proc.stderr
    assert (tmp_path / "bin2" / "halfopen").read_text() == "#!/bin/sh\n"
    # a man page of the same name that is not our link is refused, and left as it was
    (tmp_path / "man2" / "man8").mkdir(parents=True)
    (tmp_path / "man2" / "man8" / "halfopen.8").write_text(".TH THEIRS 8\n")
    proc = install(tmp_path, MANDIR=str(tmp_path / "man2"))
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "is not halfopen's link" in proc.stderr
    assert (tmp_path / "man2" / "man8" / "halfopen.8").read_text() == ".TH THEIRS 8\n"


def man_finds(tmp: Path, found: bool = True) -> Path | None:
    """Where `man -w halfopen` finds the page for a user whose PATH starts with tmp/bin
    (man-db maps each PATH directory's ../share/man into its search path; no MANPATH)."""
    if shutil.which("man") is None:
        pytest.fail("man (man-db) is installed by scripts/install-deps --test")
    env = {**BARE_ENV, "PATH": f"{tmp / 'bin'}:{BARE_ENV['PATH']}"}
    proc = run(["man", "-w", "halfopen"], env=env)
    if not found:
        assert proc.returncode == 16, proc.stdout  # man-db: no page found
        return None
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip())


def test_install_with_a_too_old_python_says_so_and_makes_nothing(tmp_path):
    if not TOO_OLD:
        pytest.skip("no Python older than 3.9 on this machine")
    proc = install(tmp_path, PYTHON=TOO_OLD[0])
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "needs Python 3.9 or newer" in proc.stderr
    assert not (tmp_path / "opt").exists()


def test_install_onto_a_read_only_filesystem_says_so_and_makes_nothing(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)], check=True)
    try:
        proc = install(tmp_path, PREFIX=str(ro / "halfopen"))
        assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
        assert "cannot write to" in proc.stderr and "read-only" in proc.stderr
        assert list(ro.iterdir()) == []
    finally:
        subprocess.run(["umount", str(ro)], check=True)


def test_make_doctor_leaves_a_running_nginx_running(tmp_path):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        pytest.fail("nginx is installed by scripts/install-deps --test")
    with socket.socket() as probe:  # a free loopback port for our own nginx
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"daemon off; pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log;\n"
        f"events {{}} http {{ access_log off; server {{ listen 127.0.0.1:{port}; }} }}\n"
    )
    server = subprocess.Popen([nginx, "-c", str(conf), "-p", str(tmp_path)], stderr=subprocess.PIPE)
    try:
        time.sleep(0.5)
        assert server.poll() is None, server.stderr.read() if server.stderr else ""
        proc = run(["make", "-s", "doctor", f"PREFIX={tmp_path}/opt/halfopen", f"BINDIR={tmp_path}/bin",
                    f"MANDIR={tmp_path}/share/man", "PYTHON=/usr/bin/python3"], cwd=REPO, timeout=600,
                   env={**os.environ, **BARE_ENV})
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "status " in proc.stdout and "rules checked" in proc.stdout
        # `man halfopen` works after `make doctor`, and shows the installed page
        assert os.path.islink(tmp_path / "share" / "man" / "man8" / "halfopen.8")
        assert man_finds(tmp_path) == tmp_path / "opt" / "halfopen" / "share" / "man" / "man8" / "halfopen.8"
        assert server.poll() is None, "make doctor stopped an nginx it did not start"
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)


def test_pipx_install_with_its_own_home_and_bin_dir(tmp_path):
    pipx = shutil.which("pipx")
    assert pipx, "pipx is installed by scripts/install-deps --test (Debian's pipx)"
    env = {**os.environ, "PIPX_HOME": str(tmp_path / "pipx"), "PIPX_BIN_DIR": str(tmp_path / "bin")}
    proc = run([pipx, "install", str(REPO)], env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert_clean(run([str(tmp_path / "bin" / "halfopen"), "sockets", "state", "listening"]))
    # the pipx route of docs/deploy.md: the page is in pipx's venv (pipx 1.5+ also links
    # it into PIPX_MAN_DIR; Debian 12's 1.1 does not), and man -l shows it
    page = tmp_path / "pipx" / "venvs" / "halfopen" / "share" / "man" / "man8" / "halfopen.8"
    assert page.is_file()
    shown = run(["man", "-l", str(page)], env={**BARE_ENV, "MANWIDTH": "100"})
    assert shown.returncode == 0 and "EXIT STATUS" in shown.stdout


def test_a_missing_tool_is_named_with_its_package_in_one_line():
    # a PATH without iproute2's ip: the lab says what is missing and how to get it
    proc = run([sys.executable, "-m", "halfopen", "lab", "run", "leaky-server"], env={"PATH": "/nonexistent"})
    assert proc.returncode == 3 and proc.stdout == ""
    assert proc.stderr == "halfopen: ip is not installed: apt-get install iproute2 (or scripts/install-deps --test)\n"


# -- packaging: the wheel builds with the setuptools floor, without a deprecation --------


def setuptools_floor() -> str:
    text = (REPO / "pyproject.toml").read_text()
    (floor,) = re.findall(r'^requires = \["setuptools>=(\d+)"\]$', text, re.M)
    return floor


def build_wheel(venv: Path, tree: Path, out: Path) -> tuple[subprocess.CompletedProcess, str]:
    """pip wheel -v of `tree` with the venv's setuptools (no build isolation): the
    backend's warnings are in the log."""
    proc = run([str(venv / "bin" / "pip"), "wheel", "-v", "--no-deps", "--no-build-isolation",
                "--disable-pip-version-check", "-w", str(out), str(tree)], timeout=300)
    return proc, proc.stdout + proc.stderr


def source_tree(dest: Path) -> Path:
    """What the wheel is built from, copied: a build in place would leave build/ and
    an egg-info in the checkout."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, dest / name)
    shutil.copytree(REPO / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (dest / "docs").mkdir()
    shutil.copy(REPO / "docs" / "halfopen.8", dest / "docs" / "halfopen.8")
    return dest


def test_the_wheel_builds_with_the_setuptools_floor_without_deprecation(tmp_path):
    """PEP 639 metadata (an SPDX license expression, license-files) with exactly the
    oldest setuptools pyproject.toml allows, from PyPI: no deprecation in the build log;
    the old `license = {text = ...}` table in the same build logs one (the check can fail)."""
    floor = setuptools_floor()
    venv = tmp_path / "venv"
    assert_clean(run([sys.executable, "-m", "venv", str(venv)]))
    got = run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
               f"setuptools=={floor}.*"], timeout=300)
    if got.returncode != 0:
        pytest.fail(f"pip could not fetch setuptools=={floor}.* from its index: {got.stderr[-500:]}")
    tree = source_tree(tmp_path / "tree")
    proc, log = build_wheel(venv, tree, tmp_path / "wheel")
    assert proc.returncode == 0, log[-2000:]
    assert "deprecat" not in log.lower(), [line for line in log.splitlines() if "eprecat" in line]
    (wheel,) = (tmp_path / "wheel").glob("halfopen-*.whl")
    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
        names = z.namelist()
    assert "License-Expression: Apache-2.0" in meta and "License-File: LICENSE" in meta
    for classifier in ("Operating System :: POSIX :: Linux", "Environment :: Console",
                       "Topic :: System :: Networking :: Monitoring",
                       *(f"Programming Language :: Python :: 3.{m}" for m in range(9, 14))):
        assert f"Classifier: {classifier}\n" in meta, classifier
    assert "Project-URL: Documentation, " in meta and "Project-URL: Source, " in meta
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert any(n.endswith(".data/data/share/man/man8/halfopen.8") for n in names)

    old = (tree / "pyproject.toml").read_text().replace(
        'license = "Apache-2.0"\nlicense-files = ["LICENSE"]\n', 'license = {text = "Apache-2.0"}\n')
    assert "license = {text" in old
    (tree / "pyproject.toml").write_text(old)
    proc, log = build_wheel(venv, tree, tmp_path / "old")
    assert "SetuptoolsDeprecationWarning" in log, log[-2000:]


# -- scripts/install-deps: what it could not fetch, and from where ---------------------


def test_install_deps_names_the_package_and_registry_npm_cannot_reach(tmp_path):
    """npm pointed at a loopback port where nothing listens: npm's own error is shown
    (no --silent), then one line names the package and that registry; exit 1, and no
    models directory is left half made for the next run to trust."""
    if shutil.which("npm") is None:
        pytest.fail("npm is installed by scripts/install-deps --test")
    with socket.socket() as probe:  # a loopback port, closed again: connections are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    registry = f"http://127.0.0.1:{port}/"
    models = tmp_path / "models"
    env = {**os.environ, "HALFOPEN_K8S_MODELS": str(models), "npm_config_registry": registry,
           "npm_config_fetch_retries": "0", "npm_config_cache": str(tmp_path / "npm-cache"),
           "npm_config_prefer_online": "true"}
    proc = run(["./scripts/install-deps", "--test"], cwd=REPO, env=env, timeout=300)
    if "missing Debian packages" in proc.stderr or "installing " in proc.stderr:
        pytest.skip("Debian packages missing: install-deps would install them first")
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (f"install-deps: npm could not fetch @kubernetes-models/prometheus-operator@6.0.0 "
                    f"from {registry} (see npm's error above)"), proc.stderr
    assert "ECONNREFUSED" in proc.stderr  # npm's own reason, no longer hidden
    assert not (models / "node_modules" / "@kubernetes-models").exists()
