# Back office image: one image, three roles chosen by the first argument (see deploy/entrypoint.sh):
#   web      gunicorn on $PORT (default 8000)
#   worker   the django-q2 job cluster
#   migrate  apply database migrations once, then exit
#
#   docker build -t backoffice .
#   docker run --rm -e SECRET_KEY=... -e DATABASE_URL=... -p 8000:8000 backoffice web

# --- Builder: install the project and its dependencies into a virtualenv ------------------------
FROM python:3.11-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# Every dependency ships wheels for CPython 3.11 on manylinux (psycopg[binary] bundles libpq),
# so no compiler is needed here.
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY . .
RUN pip install ".[redis]"

# --- Final: the venv, the source, the static files, a non-root user -----------------------------
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    DATA_DIR=/app/var

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin app

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
# Code stays owned by root: the app user can run it, not change it.
COPY . .

# collectstatic imports the settings, which refuse to load without SECRET_KEY: give it throwaway
# values for this one command only. No secret is baked into the image; the real SECRET_KEY
# comes from the environment at run time.
RUN chmod 0755 deploy/entrypoint.sh \
    && SECRET_KEY=collectstatic-only DEBUG=0 ALLOWED_HOSTS=localhost python manage.py collectstatic --noinput \
    && mkdir -p /app/var/media \
    && chown -R app:app /app/var
# /app/var (DATA_DIR) is the only place the app writes: media uploads and, without REDIS_URL, the
# file cache. It exists in the image owned by app, so a named volume mounted on /app/var/media
# starts out writable by app. chown comes after collectstatic, which may create var/cache as root.

# Numeric form of "app", so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001

EXPOSE 8000

# Liveness only: /health/ready needs the database, and Docker should not call a web process
# unhealthy because PostgreSQL is slow. Python's urllib, as slim images have no curl; urlopen
# raises (exit status 1) on a refused connection or any non-2xx answer. The compose file turns
# this off for the worker and migrate containers, which serve no HTTP. The port is the default
# one: a container started with another PORT needs its own healthcheck.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=4)"]

ENTRYPOINT ["/app/deploy/entrypoint.sh"]
CMD ["web"]
