#!/bin/sh
# Start the service: migrate the database once, then hand the process to gunicorn.
# `make run` and the Dockerfile both run exactly this. The first step also checks the configuration: with
# MODERATION_ENV=production (the Docker image) it stops here, saying what is missing or unsafe, until
# MODERATION_SECRET_KEY (32 bytes or more, not a known default) and MODERATION_DATABASE_URL are set.
set -e
python -m moderation db upgrade || { echo "boot.sh: not started, see the error above" >&2; exit 1; }
exec gunicorn -c gunicorn.conf.py wsgi:app
