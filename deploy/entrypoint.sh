#!/usr/bin/env bash
# Container entry point: the first argument picks the role.
#
#   web      gunicorn serving backoffice.wsgi (settings in deploy/gunicorn.conf.py)
#   worker   the django-q2 cluster that runs background jobs
#   migrate  apply database migrations, then exit
#   anything else is run as given, e.g. `python manage.py createsuperuser`
#
# `web` does not migrate: with several web replicas starting at once the migrations would race.
# They run once, before the web and worker processes start, in the dedicated `migrate` service
# (docker-compose.yml) or Job (deploy/k8s/migrate-job.yaml).
set -euo pipefail

# Run from the project root (/app in the image) whatever the caller's working directory.
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

command="${1:-web}"
if [[ $# -gt 0 ]]; then
    shift
fi

# exec, so the server is PID 1 and receives the SIGTERM that stops the container: gunicorn and
# qcluster both shut down gracefully on it.
case "$command" in
    web)
        exec gunicorn -c deploy/gunicorn.conf.py backoffice.wsgi "$@"
        ;;
    worker)
        exec python manage.py qcluster "$@"
        ;;
    migrate)
        exec python manage.py migrate --noinput "$@"
        ;;
    *)
        exec "$command" "$@"
        ;;
esac
