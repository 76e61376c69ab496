"""Gunicorn settings: ``gunicorn -c deploy/gunicorn.conf.py backoffice.wsgi``.

Read from the environment:

- ``PORT``: the port to listen on (default 8000, the port the Dockerfile exposes).
- ``WEB_CONCURRENCY``: the number of worker processes (default 2 x CPUs + 1, at most 8).
- ``GUNICORN_TIMEOUT``: seconds a request may take before its worker is killed (default 30).
- ``FORWARDED_ALLOW_IPS``: the proxies whose X-Forwarded-* headers gunicorn believes.
"""

import os

# Every variable is read by an os.environ.get call naming it literally: tests/test_deploy_files.py
# finds the names that way, to check the deployment files set no variable that nothing reads.


def _int_from_env(name: str, raw: str | None, default: int) -> int:
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, not {raw!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be at least 1, not {value}")
    return value


def _cpu_count() -> int:
    # The CPUs this process may run on; os.cpu_count() would count the whole machine.
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# --- Socket ---------------------------------------------------------------------------------------

# All interfaces: inside a container, the published port or the Service reaches us from outside.
port = _int_from_env("PORT", os.environ.get("PORT"), 8000)
bind = [f"0.0.0.0:{port}"]

# Only these addresses may tell gunicorn the request came over HTTPS (X-Forwarded-Proto and
# friends). Django decides that for itself when TRUST_X_FORWARDED_PROTO is set, so widen this only
# when something reads wsgi.url_scheme.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

# --- Workers --------------------------------------------------------------------------------------

# Sync workers: one request per process. The app is plain blocking Django (ORM, payment and SMS
# APIs), and slow clients are buffered by the proxy in front, so threads or greenlets buy little.
worker_class = "sync"

# The usual 2 x CPUs + 1, capped: the CPU count in a container is often the host's, and every
# worker holds its own Django and database connection. Set WEB_CONCURRENCY to size it exactly.
workers = _int_from_env(
    "WEB_CONCURRENCY", os.environ.get("WEB_CONCURRENCY"), min(2 * _cpu_count() + 1, 8)
)

# A request running longer than this gets its worker killed and restarted.
timeout = _int_from_env("GUNICORN_TIMEOUT", os.environ.get("GUNICORN_TIMEOUT"), 30)

# On SIGTERM, requests in flight get this long to finish. Kubernetes waits 30 s by default before
# SIGKILL; the web Deployment gives a little more so this can run its course.
graceful_timeout = 30

# Sync workers close the connection after each response and ignore this; it applies if
# worker_class is changed to gthread. Longer than the proxy's idle timeout would be wrong.
keepalive = 5

# Restart each worker after about this many requests, so a slow leak cannot grow without bound.
# The jitter (a random 0..jitter added per worker) keeps the workers from restarting together. A
# restart is not free: the new worker imports the app and warms up for 1.5-2.5 s of CPU, during
# which it serves nothing (when both restart together, nobody does: a 20 s run in which they did
# had a p99 of 1.6 s instead of under 20 ms, measured). Cached storefront answers take about 1 ms
# of a worker, so at 2,000 (or 10,000) a busy worker would restart every few (or 10-20) seconds;
# at 200,000 (+ up to 100,000) it is every few minutes at full load, and rarely otherwise.
max_requests = 200000
max_requests_jitter = 100000

# Each worker imports the app itself. Preloading in the master would save memory, but then
# connections and threads opened at import time would be shared across the fork.
preload_app = False

# Workers tell the master they are alive by touching a file every second. On a disk-backed or
# overlay filesystem that can block and get healthy workers killed; /dev/shm is memory.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108

# --- Logging --------------------------------------------------------------------------------------

# No access log: the app writes one structured line per request itself, with the request id,
# status and timings (backoffice/observability.py). Gunicorn's own messages go to stderr.
accesslog = None
errorlog = "-"

# --- Control socket -------------------------------------------------------------------------------

# Gunicorn 25.1+ opens a control socket for `gunicornc` in $HOME/.gunicorn. Nothing uses it in a
# container, and the app user's home (/app) is not writable, so it would only log an error at
# every start. Older gunicorn versions ignore this setting.
control_socket_disable = True
