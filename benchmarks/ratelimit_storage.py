"""What a rate-limited request costs in each limit storage, and whether concurrent processes count exactly.

A request to a limited endpoint costs one `incr` per limit that applies, then a `get` and a `get_expiry`
for the response headers. This times that cycle in memory, in the shared SQLite file (the default) and
in Redis (with --redis URL), and lets several processes hit one key of the SQLite file at once to show
that no count is lost.

    .venv/bin/python benchmarks/ratelimit_storage.py [--cycles 20000] [--processes 2] [--redis redis://127.0.0.1:6379/15]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from limits.storage import storage_from_string  # noqa: E402

from moderation import ratelimit_storage  # noqa: E402,F401  (registers the sqlite scheme)


def cycle_cost(url: str, cycles: int) -> float:
    """Return microseconds per incr + get + get_expiry on `url`, over `cycles` keys in a few windows."""
    storage = storage_from_string(url)
    for i in range(100):  # warm up: connection, table, pages
        storage.incr(f"warm{i}", 60)
    started = time.perf_counter()
    for i in range(cycles):
        key = f"bench/{i % 500}"
        storage.incr(key, 60)
        storage.get(key)
        storage.get_expiry(key)
    elapsed = time.perf_counter() - started
    storage.reset()
    return elapsed / cycles * 1e6


def _hammer(url: str, hits: int, start: multiprocessing.synchronize.Event) -> None:
    storage = storage_from_string(url)
    start.wait()
    for _ in range(hits):
        storage.incr("shared", 3600)


def concurrent_count(url: str, processes: int, hits: int) -> tuple[int, int, float]:
    """Let `processes` processes add `hits` each to one key; return (expected, counted, hits per second)."""
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    workers = [context.Process(target=_hammer, args=(url, hits, start)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    time.sleep(1.0)  # let every process import and open the file
    started = time.perf_counter()
    start.set()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    return processes * hits, storage_from_string(url).get("shared"), processes * hits / elapsed


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=20000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--hits", type=int, default=5000, help="per process, in the concurrency run")
    parser.add_argument("--redis", help="also time a Redis storage (its keys are reset afterwards: use a spare db)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        sqlite_url = f"sqlite:///{Path(folder) / 'limits.db'}"
        urls = {"memory": "memory://", "sqlite file": sqlite_url}
        if args.redis:
            urls["redis"] = args.redis
        print(f"storage       us per request (incr + get + get_expiry), {args.cycles} requests")
        for name, url in urls.items():
            print(f"{name:<13} {cycle_cost(url, args.cycles):8.1f}")
        expected, counted, rate = concurrent_count(sqlite_url, args.processes, args.hits)
        verdict = "PASS" if counted == expected else "FAIL"
        print(f"sqlite file, {args.processes} processes on one key: {counted} of {expected} hits counted "
              f"({rate:,.0f} hits/s) -> {verdict}")


if __name__ == "__main__":
    main()
