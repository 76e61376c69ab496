"""Run the web server and the job worker together in one terminal; Ctrl-C or SIGTERM stops both.

Each child runs in a process group of its own, so the terminal's Ctrl-C (sent to the whole
foreground group) reaches only this command, which then stops each child exactly once, the way
the child expects: the worker (django-q2's qcluster) with one SIGTERM, since a second signal while
it stops raises inside its handler; the development server's group (the autoreloader and the
server it runs) with SIGINT. A child still running after the grace period is killed with its group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand

STOP_GRACE_SECONDS = 15


class Command(BaseCommand):
    help = (
        "Run the development web server and the django-q2 worker together "
        "(Ctrl-C or SIGTERM stops both)."
    )

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

        # The handler only notes the request: raising from it could land inside Popen, after
        # the fork, and lose a child that is running but not yet in ``children``.
        stop_requested: list[int] = []

        def request_stop(signum, frame):
            stop_requested.append(signum)

        stop_on = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, request_stop) for sig in stop_on}
        children: dict[str, subprocess.Popen] = {}
        exit_code = 0
        try:
            children["web"] = subprocess.Popen(web_cmd, start_new_session=True)  # noqa: S603
            if not stop_requested:
                children["worker"] = subprocess.Popen(  # noqa: S603 - our interpreter, manage.py
                    [*manage, "qcluster"], start_new_session=True
                )
                self.stdout.write(
                    f"Serving on http://{options['addr']}/ with a job worker; Ctrl-C stops both."
                )
            while not stop_requested and not exit_code:
                for name, child in children.items():
                    if child.poll() is not None:
                        self.stderr.write(f"The {name} process exited ({child.returncode}).")
                        exit_code = child.returncode or 1
                        break
                else:
                    time.sleep(0.5)
        finally:
            # Further Ctrl-Cs while the children stop must not cut their shutdown short.
            for sig in previous:
                signal.signal(sig, signal.SIG_IGN)
            self._stop(children)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if exit_code:
            sys.exit(exit_code)
        self.stdout.write("Stopped the web server and the job worker.")

    def _stop(self, children: dict[str, subprocess.Popen]) -> None:
        stop_signals = {"web": signal.SIGINT, "worker": signal.SIGTERM}
        for name, child in children.items():
            if child.poll() is None:
                if name == "web":
                    # The autoreloader runs the server in a child of its own: stop the group.
                    _signal_group(child, stop_signals[name])
                else:
                    child.send_signal(stop_signals[name])
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in children.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
        # Whatever is left of a group (a stuck child, a worker process it forked) goes now.
        for child in children.values():
            _signal_group(child, signal.SIGKILL)
            if child.poll() is None:
                child.wait()


def _signal_group(child: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, sig)
