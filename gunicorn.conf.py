"""gunicorn settings for `make run` and the Docker image (both start it through boot.sh)."""

import ctypes
import gc
import os

from moderation.server import BufferingWorker

# Scoring multiplies small vectors by matrices (the encoder's output network); a second BLAS thread per
# worker only competes with the other worker for the two cores. Set before numpy loads (preload).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

bind = os.environ.get("BIND", f"127.0.0.1:{os.environ.get('PORT', '8000')}")
# Two cores here: two workers; each holds one copy-on-write share of the preloaded model.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threads run only complete requests (the worker's event loop collects them), so slow clients take none;
# more than one lets a request that waits (database, SQLite's writer lock) not hold up /healthz. Keep it at
# most twice MODERATION_DB_POOL_SIZE, the connections a worker may open to PostgreSQL.
worker_class = BufferingWorker
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# Seconds a client has to send a whole request (and to take in the answer) before it is cut off.
BufferingWorker.client_timeout = float(os.environ.get("GUNICORN_CLIENT_TIMEOUT", "10"))
# Idle kept-alive connections wait in the event loop (no thread); a proxy in front should reuse them for less.
keepalive = 5
# Preloading also gives every worker the master's configuration: without MODERATION_SECRET_KEY (development)
# the app makes a random secret per start, and workers that each made their own would not accept each
# other's session cookies (tests/test_e2e_sessions.py signs in and is served by both workers).
preload_app = True
timeout = 30
graceful_timeout = 20
accesslog = None


def pre_fork(server, worker):
    # Loading the model (joblib decompresses ~19 MiB) leaves freed heap pages in the master, which every
    # forked worker would map as resident (shared) memory: hand them back to the system first (glibc
    # only; about 20 MB less Rss per worker, 20 MB less in all since the pages were shared).
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def post_fork(server, worker):
    # Connections opened in the master must not be shared by the forked workers.
    app = server.app.wsgi()
    app.extensions["moderation.db"][0].dispose(close=False)
    # What the master preloaded (the app, the model's vocabularies) lives as long as the worker: keep
    # it out of the cyclic garbage collector, whose full passes otherwise walk it all (under load they
    # were the 120 ms worst cases; with this the worst was ~45 ms).
    gc.freeze()


# Prometheus counters are per process; workers write them to a shared folder that /metrics adds up.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    import tempfile

    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="moderation-metrics-")


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
