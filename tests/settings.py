"""Test settings: the production settings, with what a test run needs on top.

The environment is pinned so a developer's shell (DEBUG=1, say) cannot change what the suite
checks. ``DATABASE_URL`` is left alone: CI runs the suite on SQLite and on PostgreSQL.
"""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

_data_dir = tempfile.mkdtemp(prefix="backoffice-tests-")
atexit.register(shutil.rmtree, _data_dir, ignore_errors=True)

os.environ.update(
    {
        "DEBUG": "0",
        "SECRET_KEY": "tests-only-key-that-is-long-enough-and-never-used-for-anything-real",
        "ALLOWED_HOSTS": "testserver,localhost,127.0.0.1",
        "SECURE_SSL_REDIRECT": "0",
        "LOG_FORMAT": "console",
        "DATA_DIR": _data_dir,
    }
)

from backoffice.settings import *  # noqa: E402,F403
from backoffice.settings import Q_CLUSTER, STORAGES  # noqa: E402

# whitenoise scans STATIC_ROOT at start; give it an empty one rather than a warning.
STATIC_ROOT = Path(_data_dir) / "static"
STATIC_ROOT.mkdir()
# Manifest storage needs collectstatic; tests render templates without it.
STORAGES = {
    **STORAGES,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Jobs run in the caller, so a test sees their effect (and their exceptions) at once.
Q_CLUSTER = {**Q_CLUSTER, "sync": True}
