"""A fresh clone starts with the README's first command, and stops cleanly on SIGINT and SIGTERM.

These run the real commands in subprocesses: `make demo` in a copy of the repository as git would
check it out (no `var/`, no `.venv`), and `manage.py serve` stopped the way a terminal (Ctrl-C to
the whole process group) and a process manager (SIGTERM to the main process) stop it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from django.core.files.storage import storages
from django.test import override_settings

from tests.test_demo import ROOT, _free_port, _get

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")


# --- processes ---------------------------------------------------------------------------------


def _children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def _descendants(pid: int) -> set[int]:
    tree = _children_by_parent()
    found, todo = set(), [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for(url: str, process: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if _get(url)[0] == 200:
                return
        except OSError:
            pass
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            pytest.fail(f"exited ({process.returncode}) before {url} answered:\n{output[-4000:]}")
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"{url} did not answer 200 within {seconds} s")
        time.sleep(0.5)


def _stop_and_check(process: subprocess.Popen, *, group_signal: int | None = None,
                    main_signal: int | None = None, port: int) -> str:
    """Stop ``process`` as told; every process it started must be gone within seconds."""
    family = _descendants(process.pid)
    assert len(family) >= 3, "serve runs at least a web server and a worker"
    started = time.monotonic()
    if group_signal is not None:
        os.killpg(process.pid, group_signal)  # what a terminal's Ctrl-C does
    if main_signal is not None:
        process.send_signal(main_signal)  # what a process manager or `kill` does
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        for pid in family | {process.pid}:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail("serve did not stop within 30 s:\n" + output[-4000:])
    took = time.monotonic() - started
    deadline = time.monotonic() + 5
    while (survivors := [pid for pid in family if _alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)
    assert not survivors, f"children survived the stop: {survivors}"
    assert took < 20, f"stopping took {took:.1f} s"
    with pytest.raises(OSError):
        _get(f"http://127.0.0.1:{port}/health/live")
    assert "Traceback" not in output, output[-4000:]
    return output


# --- the README's first command on a fresh clone --------------------------------------------


def _fresh_checkout(target: Path) -> None:
    """The files a clone of this work tree would have: tracked and new files, nothing ignored."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


@pytest.mark.skipif(shutil.which("make") is None or shutil.which("git") is None
                    or not (ROOT / ".git").exists(), reason="needs make and a git work tree")
def test_make_demo_starts_a_fresh_clone_and_ctrl_c_stops_everything(tmp_path):
    clone = tmp_path / "clone"
    clone.mkdir()
    _fresh_checkout(clone)
    assert not (clone / "var").exists() and not (clone / ".venv").exists()
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "ALLOWED_HOSTS", "DATA_DIR",
                        "DJANGO_SETTINGS_MODULE", "DEBUG", "VIRTUAL_ENV", "MEDIA_ROOT"}}
    env["PYTHON"] = os.environ.get("PYTHON", "python3")
    demo = subprocess.Popen(
        ["make", "demo", f"ADDR=127.0.0.1:{port}"], cwd=clone, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    # The install is most of the wait: a new virtualenv and the project's packages.
    _wait_for(f"http://127.0.0.1:{port}/admin/login/", demo, seconds=420)
    status, html = _get(f"http://127.0.0.1:{port}/admin/login/")
    assert status == 200 and "password" in html
    assert (clone / "var" / "db.sqlite3").exists()

    output = _stop_and_check(demo, group_signal=signal.SIGINT, port=port)
    assert re.search(r"Login:\s+admin / \S{12,}", output), output[-4000:]
    assert "Stopped the web server and the job worker." in output


# --- serve alone, stopped by a process manager ----------------------------------------------


def _serve_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "ALLOWED_HOSTS"}}
    env.update(DJANGO_SETTINGS_MODULE="backoffice.settings", DEBUG="1",
               DATA_DIR=str(data_dir), LOG_FORMAT="console")
    return env


def test_sigterm_stops_serve_and_both_children_quietly(tmp_path):
    env = _serve_env(tmp_path)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT,
                   env=env, check=True, timeout=180)
    port = _free_port()
    serve = subprocess.Popen(
        # With the autoreloader: its server runs in a grandchild that must stop too.
        [sys.executable, "manage.py", "serve", "--addr", f"127.0.0.1:{port}"],
        cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    _wait_for(f"http://127.0.0.1:{port}/health/ready", serve, seconds=60)
    time.sleep(1)  # the worker's processes are up too
    _stop_and_check(serve, main_signal=signal.SIGTERM, port=port)
    assert serve.returncode == 0


# --- a database made again where another was, with the old cache left ------------------------


def test_migrate_on_a_new_database_ignores_the_cache_left_by_an_old_one(tmp_path):
    """The file cache outlives the database; cached rows of the old one must not be trusted."""
    env = _serve_env(tmp_path)

    def manage(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=180)

    assert manage("migrate", "--noinput", "-v0").returncode == 0
    activate = ("from backoffice.plugin_host.models import PluginConfig as P; "
                "P.objects.filter(identifier='manual_payment').update(active=True); "
                "print(sorted(P.objects.filter(active=True).values_list('identifier', flat=True)))")
    assert "manual_payment" in manage("shell", "-v0", "-c", activate).stdout
    assert manage("check").returncode == 0  # the plugin list is now in the query cache
    for leftover in tmp_path.glob("db.sqlite3*"):
        leftover.unlink()
    again = manage("migrate", "--noinput", "-v0")
    assert again.returncode == 0, again.stdout + again.stderr


def test_cache_keys_belong_to_one_database(settings):
    from backoffice.settings import CACHE_KEY_PREFIX

    assert settings.CACHES["default"]["KEY_PREFIX"] == CACHE_KEY_PREFIX
    assert settings.CACHES["storefront"]["KEY_PREFIX"].startswith(CACHE_KEY_PREFIX)
    other = subprocess.run(
        [sys.executable, "-c", "from backoffice.settings import CACHE_KEY_PREFIX as p; print(p)"],
        cwd=ROOT, capture_output=True, text=True, check=True,
        env={**os.environ, "DEBUG": "1", "DATABASE_URL": "postgres://u@db.example:5432/other"},
    ).stdout.strip()
    assert other.startswith("backoffice-") and other != CACHE_KEY_PREFIX


# --- small things of the first visit --------------------------------------------------------


@pytest.mark.django_db
def test_signing_in_without_next_lands_on_the_dashboard(client, django_user_model):
    django_user_model.objects.create_user("staff", password="pw-staff-123", is_staff=True)
    response = client.post("/admin/login/", {"username": "staff", "password": "pw-staff-123"})
    assert response.status_code == 302
    assert response["Location"] == "/admin/"
    assert client.get(response["Location"]).status_code == 200


def test_favicon_is_served(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 302
    assert response["Location"].endswith("favicon.ico")
    icon = Path(finders.find("favicon.ico"))
    assert icon.read_bytes()[:4] == b"\x00\x00\x01\x00", "a real .ico file"


@pytest.mark.django_db
def test_readiness_fails_loudly_without_collected_static_files(client, tmp_path, caplog):
    manifest_storage = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
    with override_settings(STORAGES=manifest_storage, STATIC_ROOT=tmp_path):
        response = client.get("/health/ready")
        assert response.status_code == 503
        assert response.json()["failing"] == ["static_files"]
        assert "collectstatic" in caplog.text

        storage = storages["staticfiles"]
        (tmp_path / storage.manifest_name).write_text('{"paths": {}, "version": "1.1"}')
        assert client.get("/health/ready").status_code == 200
