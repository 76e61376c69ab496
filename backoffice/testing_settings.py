"""Settings for testing a plugin in its own repository: ``pytest --ds=backoffice.testing_settings``.

The back office's production settings, with what a test run needs on top: a throwaway data
directory (an SQLite database, the file caches), a fixed ``SECRET_KEY``, no HTTPS redirect, a fast
password hasher, and jobs (event deliveries) run at once in the test's own process. Variables
already set in the environment win (``DATABASE_URL`` for PostgreSQL, say), except ``DATA_DIR``:
always a new temporary directory, removed at exit.

To add settings of your own, make a module of your own that starts with
``from backoffice.testing_settings import *`` and point ``--ds`` at it.
"""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

# Always a fresh directory: never the caches or the database of a back office you run.
_data_dir = tempfile.mkdtemp(prefix="backoffice-plugin-tests-")
atexit.register(shutil.rmtree, _data_dir, ignore_errors=True)
os.environ["DATA_DIR"] = _data_dir
for _name, _value in {
    "DEBUG": "0",
    "SECRET_KEY": "plugin-tests-only-key-that-is-long-enough-and-never-used-for-anything-real",
    "ALLOWED_HOSTS": "testserver,localhost,127.0.0.1",
    "SECURE_SSL_REDIRECT": "0",
    "LOG_FORMAT": "console",
}.items():
    os.environ.setdefault(_name, _value)

from backoffice.settings import *  # noqa: E402,F403
from backoffice.settings import Q_CLUSTER, STORAGES  # noqa: E402

# whitenoise scans STATIC_ROOT at start; give it an empty one rather than a warning.
STATIC_ROOT = Path(_data_dir) / "static"
STATIC_ROOT.mkdir(exist_ok=True)
# Manifest storage needs collectstatic; tests render templates without it.
STORAGES = {
    **STORAGES,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Jobs run in the caller, so a test sees their effect (and their exceptions) at once: an event
# emitted inside ``django_capture_on_commit_callbacks(execute=True)`` is delivered to the
# plugins before the block ends.
Q_CLUSTER = {**Q_CLUSTER, "sync": True}
