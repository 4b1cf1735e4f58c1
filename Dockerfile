# Slim, non-root image. Same steps as `make run`: install the hashed lock requirements.txt, then boot.sh
# (migrate once, exec gunicorn). tests/test_packaging.py keeps the two in step.
# It listens on 0.0.0.0, so it runs in production mode: it refuses to start until the operator passes
# MODERATION_SECRET_KEY (32 bytes or more) and MODERATION_DATABASE_URL (`docker run -e ...`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MODERATION_ENV=production \
    BIND=0.0.0.0:8000

WORKDIR /app
RUN useradd --create-home --uid 10001 moderation

COPY requirements.txt .
RUN pip install --require-hashes --no-cache-dir -r requirements.txt

# Code and the shipped model stay root's and read-only to the service user: a write there would be code
# run by every worker (the model is a pickle). It writes only instance/: the SQLite database and the
# model store (MODERATION_MODEL_STORE, default instance/models), a volume so promotions survive the container.
COPY moderation/ moderation/
COPY model/ model/
COPY wsgi.py gunicorn.conf.py boot.sh ./
RUN mkdir -p instance/models && chown -R moderation:moderation instance
VOLUME ["/app/instance"]

USER 10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
CMD ["./boot.sh"]
