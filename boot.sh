#!/bin/sh
# Start the service: migrate the database once, then hand the process to gunicorn.
# `make run` and the Dockerfile both run exactly this.
set -e
python -m moderation db upgrade
exec gunicorn -c gunicorn.conf.py wsgi:app
