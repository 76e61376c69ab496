"""`make demo`: a staff login printed on screen, idempotent, and web + worker served together."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import CommandError, call_command

ROOT = Path(__file__).resolve().parent.parent


def _run_demo_setup() -> str:
    out = StringIO()
    call_command("demo_setup", stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_demo_setup_refuses_to_run_in_production(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG"):
        call_command("demo_setup", stdout=StringIO())
    assert not get_user_model().objects.exists()


@pytest.mark.django_db
def test_demo_setup_prints_a_working_login_and_is_idempotent(settings):
    settings.DEBUG = True
    first = _run_demo_setup()
    second = _run_demo_setup()
    password = re.search(r"Login:\s+admin / (\S+)", first).group(1)
    assert len(password) >= 12
    assert f"admin / {password}" in second, "a second run keeps the same login"
    assert get_user_model().objects.count() == 1
    user = authenticate(username="admin", password=password)
    assert user is not None and user.is_staff and user.is_superuser
    password_file = Path(settings.DATA_DIR) / "demo-admin-password"
    assert oct(password_file.stat().st_mode & 0o777) == "0o600"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback only
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _manage(env: dict, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_serve_runs_the_web_server_and_the_job_worker_together(tmp_path):
    """The path `make demo` takes, on a fresh SQLite file: migrate, set up, serve, Ctrl-C."""
    env = {
        k: v for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "ALLOWED_HOSTS"}
    }
    env.update(DJANGO_SETTINGS_MODULE="backoffice.settings", DEBUG="1", DATA_DIR=str(tmp_path),
               LOG_FORMAT="console")
    addr = f"127.0.0.1:{_free_port()}"
    _manage(env, "migrate", "--noinput")
    setup = _manage(env, "demo_setup", "--addr", addr)
    assert f"http://{addr}/admin/" in setup

    serve = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--addr", addr, "--noreload"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if _get(f"http://{addr}/health/ready")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the web server did not become ready"
            assert serve.poll() is None, "serve exited early"
            time.sleep(0.5)

        status, html = _get(f"http://{addr}/admin/login/")
        assert status == 200 and "password" in html
        status, html = _get(f"http://{addr}/api/v1/docs")
        assert status == 200 and "swagger" in html.lower()

        # The worker picks a job up from the ORM broker while the web server runs.
        _manage(env, "shell", "-c",
                "from django_q.tasks import async_task; "
                "async_task('math.factorial', 5, task_name='demo-probe')")
        check = ("from django_q.models import Success; "
                 "t = Success.objects.filter(name='demo-probe').first(); "
                 "print('RESULT', t.result if t else None)")
        deadline = time.monotonic() + 60
        while "RESULT 120" not in _manage(env, "shell", "-c", check):
            assert time.monotonic() < deadline, "the worker did not run the job"
            time.sleep(1)
    finally:
        serve.send_signal(signal.SIGINT)
        try:
            output, _ = serve.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
            output, _ = serve.communicate()
            pytest.fail("serve did not stop on Ctrl-C:\n" + output)
    assert serve.returncode == 0, output
