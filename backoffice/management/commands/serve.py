"""Run the web server and the job worker together in one terminal; Ctrl-C stops both."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand

STOP_GRACE_SECONDS = 15


class Command(BaseCommand):
    help = "Run the development web server and the django-q2 worker together (Ctrl-C stops both)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--addr", default="127.0.0.1:8000", help="host:port for the server")
        parser.add_argument(
            "--noreload", action="store_true", help="Do not restart the server on code changes."
        )

    def handle(self, *args, **options) -> None:
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        web_cmd = [*manage, "runserver", options["addr"]]
        if options["noreload"]:
            web_cmd.append("--noreload")
        children = {
            "web": subprocess.Popen(web_cmd),  # noqa: S603 - our own interpreter and manage.py
            "worker": subprocess.Popen([*manage, "qcluster"]),  # noqa: S603
        }
        self.stdout.write(f"Serving on http://{options['addr']}/ with a job worker; Ctrl-C stops.")
        exit_code = 0
        try:
            while True:
                for name, child in children.items():
                    if child.poll() is not None:
                        self.stderr.write(f"The {name} process exited ({child.returncode}).")
                        exit_code = child.returncode or 1
                        raise KeyboardInterrupt
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self._stop(children.values())
        if exit_code:
            sys.exit(exit_code)

    def _stop(self, children) -> None:
        running = [child for child in children if child.poll() is None]
        for child in running:
            child.send_signal(signal.SIGINT)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in running:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
