"""Load-test the service under gunicorn with wrk, on SQLite and PostgreSQL, beside a bare Flask echo app.

    .venv/bin/python benchmarks/load.py [--duration 10] [--connections 16] [--threads 2] [--skip-postgres]
        [--scenario submission ...]

One run starts, one after the other and each with the same gunicorn.conf.py (2 workers of 8 threads,
preloaded; the floor app with 1 thread):
the echo app (benchmarks/echo_app.py), the service through boot.sh on a fresh SQLite file, and the
service on a fresh scratch PostgreSQL database `bench_load_<pid>` (dropped at the end); the service has
the shipped model and rate limits off. Each is driven with the wrk scripts in benchmarks/wrk/:

    submission  POST /v1/articles/<id>/comments   unique author and text per request, 50 articles
    listing     GET  /v1/articles/<id>/comments   first page of an article with 200 approved comments
    score       POST /v1/score
    coral       POST /v1/integrations/coral/moderation   pre-signed bodies (X-Coral-Signature)

For the submission scenario it also runs benchmarks/floor_app.py on each backend: the least a
submission must do (fixed-token check, the fast scorer, one raw-driver transaction with the duplicate
check and two inserts), which shows how close to the echo app any implementation could come.

It prints requests/s, p50/p99 latency and errors per scenario, the ratios to the echo app, whether every
201 wrk counted is a row in the database (and nothing more), and PASS/MISS against the targets. The
exit status is 0 whenever the measurements ran, whatever the figures.

Load goes to 127.0.0.1 only. wrk shares the two cores with gunicorn, so figures are a floor.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from scratch import scratch_postgres  # noqa: E402  (benchmarks/ is the script folder)
from sqlalchemy import create_engine, func, select  # noqa: E402

from moderation.models import Comment  # noqa: E402
from tests.servers import BIN, free_port, running, service_env  # noqa: E402

WRK_DIR = Path(__file__).resolve().parent / "wrk"
CORAL_SECRET = "bench-coral-secret"
FLOOR_TOKEN = "bench-floor-token"
ARTICLES = 50
LISTING_ARTICLE = "bench-liste"
LISTING_COMMENTS = 200
SUBMISSION_AUTHORS = "leser-w"  # prefix of the author ids submit.lua sends ("leser-" + its request id)
SCENARIOS = ("submission", "listing", "score", "coral")
# gunicorn.conf.py's default threads per worker; the floor app holds one driver connection, so it gets 1.
THREADS = "8"
SCRIPTS = {"submission": "submit.lua", "listing": "listing.lua", "score": "score.lua", "coral": "coral.lua"}
TARGET_RATIO = {"submission": 0.5, "listing": 0.7}
TARGET_P99_MS = 25.0
CORAL_BUDGET_MS = 200.0
SEED_TEXTS = (
    "Sehr guter Überblick über die Haushaltsdebatte, vielen Dank an die Redaktion dafür.",
    "Ich wohne selbst in dem Viertel und kann bestätigen, dass die Baustelle seit Monaten ruht.",
    "Eine sachliche Einordnung, die in der ganzen Aufregung bisher leider gefehlt hat.",
    "Wir waren am Wochenende auf dem Markt, die Stimmung dort war wirklich sehr freundlich.",
    "Vielleicht sollte die Stadt einmal bei den Nachbargemeinden nachfragen, wie die das lösen.",
    "Die Grafik zu den Pendlerzahlen finde ich besonders hilfreich, gern mehr davon.",
)


def log(message: str) -> None:
    print(f"# {message}", file=sys.stderr, flush=True)


# --- servers -----------------------------------------------------------------------------------------


def server_env(tmp: Path, name: str, port: int, threads: str = THREADS, **extra: str) -> dict[str, str]:
    """The environment of one gunicorn: gunicorn.conf.py's defaults pinned, metrics and log under `tmp`."""
    metrics = tmp / f"{name}-metrics"
    metrics.mkdir()
    # An empty model store of its own: the figures are the shipped model's, not a local promotion's.
    return service_env(PORT=str(port), WEB_CONCURRENCY="2", GUNICORN_THREADS=threads,
                       PROMETHEUS_MULTIPROC_DIR=str(metrics), SERVER_LOG=str(tmp / f"{name}.log"),
                       MODERATION_MODEL_STORE=str(tmp / f"{name}-store"), **extra)


def create_key(env: dict[str, str], role: str) -> str:
    """Create an API key with the CLI and return its token."""
    done = subprocess.run([str(BIN / "python"), "-m", "moderation", "keys", "create", "--role", role,
                           "--name", f"bench-{role}"], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=True, timeout=60)
    return done.stdout.strip()


def seed_listing(base: str, backend: str, moderator: str) -> dict[str, int]:
    """Put LISTING_COMMENTS approved comments under LISTING_ARTICLE; approve what the model held through the API."""
    http = requests.Session()
    held = []
    for i in range(LISTING_COMMENTS):
        answer = http.post(f"{base}/v1/articles/{LISTING_ARTICLE}/comments", timeout=30,
                           headers={"Authorization": f"Bearer {backend}"},
                           json={"author_id": f"seed-{i}", "author_name": f"Leserin {i}",
                                 "text": f"{SEED_TEXTS[i % len(SEED_TEXTS)]} (Beitrag {i})"})
        answer.raise_for_status()
        if answer.json()["status"] != "approved":
            held.append(answer.json()["id"])
    for comment_id in held:
        http.post(f"{base}/v1/moderation/comments/{comment_id}/decision", timeout=30,
                  headers={"Authorization": f"Bearer {moderator}"},
                  json={"decision": "approve", "reason": "load test"}).raise_for_status()
    total = http.get(f"{base}/v1/articles/{LISTING_ARTICLE}/comments", timeout=30).json()["total"]
    if total != LISTING_COMMENTS:
        raise RuntimeError(f"listing article has {total} published comments, expected {LISTING_COMMENTS}")
    return {"by_model": LISTING_COMMENTS - len(held), "by_moderator": len(held)}


def write_coral_bodies(path: Path, count: int) -> None:
    """Write `count` distinct signed Coral requests, one `<hex hmac>\\t<body>` per line."""
    with path.open("w", encoding="utf-8") as out:
        for i in range(count):
            text = SEED_TEXTS[i % len(SEED_TEXTS)]
            body = json.dumps({
                "action": "NEW",
                "comment": {"body": f"<p>{text}</p><p>Grüße von Leser {i}</p>", "parentID": None},
                "author": {"id": f"coral-{i}", "role": "COMMENTER"},
                "story": {"id": f"bench-story-{i % ARTICLES}", "url": f"https://www.example.de/artikel/{i % ARTICLES}"},
                "site": {"id": "bench-site"}, "tenantID": "bench", "tenantDomain": "www.example.de",
            }, ensure_ascii=False, separators=(",", ":"))
            signature = hmac.new(CORAL_SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()
            out.write(f"{signature}\t{body}\n")


# --- wrk ---------------------------------------------------------------------------------------------


def run_wrk(scenario: str, base: str, args: argparse.Namespace, **bench_env: str) -> dict[str, Any]:
    """Run one wrk scenario against `base` and return the JSON its done() printed, with rates in ms."""
    env = {**os.environ, "BENCH_LIB": str(WRK_DIR / "common.lua"), "BENCH_THREADS": str(args.threads),
           "BENCH_ARTICLES": str(ARTICLES), "BENCH_LISTING_ARTICLE": LISTING_ARTICLE, **bench_env}
    command = ["wrk", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{args.duration}s",
               "--timeout", "5s", "-s", str(WRK_DIR / SCRIPTS[scenario]), base]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.duration + 60)
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk {scenario} failed ({done.returncode}): {done.stdout[-2000:]} {done.stderr[-2000:]}")
    result = json.loads(line.removeprefix("BENCH_JSON "))
    result["statuses"] = {int(k): v for k, v in result["statuses"].items()}
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    for name in ("p50", "p90", "p99", "max"):
        result[f"{name}_ms"] = result[f"{name}_us"] / 1000
    result["non_2xx"] = sum(v for k, v in result["statuses"].items() if not 200 <= k < 300)
    errors = result["errors"]
    result["socket_errors"] = errors["connect"] + errors["read"] + errors["write"] + errors["timeout"]
    return result


def reconcile(url: str, submission: dict[str, Any]) -> dict[str, Any]:
    """Compare the submission rows in the database with the 201s wrk counted.

    wrk stops at its deadline with one request in flight on most connections; the server still commits
    those. Their ids are known (sent, never answered), so: rows - rows of cut-off requests == 201s.
    """
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            count = select(func.count()).select_from(Comment).where(Comment.author_id.like(f"{SUBMISSION_AUTHORS}%"))
            rows, deadline = -1, time.monotonic() + 15
            while time.monotonic() < deadline:  # until the cut-off requests have finished on the server
                now = conn.scalar(count)
                conn.rollback()
                if now == rows:
                    break
                rows = now
                time.sleep(0.5)
            cut_ids = [f"leser-{i}" for i in submission["in_flight"]]
            cut_rows = 0
            for start in range(0, len(cut_ids), 500):
                cut_rows += conn.scalar(select(func.count()).select_from(Comment)
                                        .where(Comment.author_id.in_(cut_ids[start:start + 500])))
    finally:
        engine.dispose()
    created = submission["statuses"].get(201, 0)
    return {"rows": rows, "cut_off": len(cut_ids), "cut_rows": cut_rows, "created": created,
            "ok": rows - cut_rows == created}


# --- the runs ----------------------------------------------------------------------------------------


def run_echo(args: argparse.Namespace, tmp: Path, coral_file: Path) -> dict[str, Any]:
    """Drive the echo app with every scenario's requests."""
    port = free_port()
    env = server_env(tmp, "echo", port)
    base = f"http://127.0.0.1:{port}"
    command = [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "benchmarks.echo_app:app"]
    with running(command, env, f"{base}/readyz", timeout=60):
        log("echo app up; running scenarios")
        return {s: run_wrk(s, base, args, BENCH_TOKEN="none", BENCH_CORAL_FILE=str(coral_file)) for s in args.scenarios}


def migrate(env: dict[str, str], url: str) -> None:
    """Create the service's schema on `url`."""
    subprocess.run([str(BIN / "python"), "-m", "moderation", "db", "upgrade"], cwd=ROOT,
                   env={**env, "MODERATION_DATABASE_URL": url}, capture_output=True, check=True, timeout=120)


def run_floor(backend: str, url: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Drive the floor app (benchmarks/floor_app.py) on `url` with the submission scenario."""
    port = free_port()
    env = server_env(tmp, f"floor-{backend}", port, threads="1", MODERATION_DATABASE_URL=url,
                     MODERATION_MODEL_DIR=str(ROOT / "model"), FLOOR_TOKEN=FLOOR_TOKEN)
    migrate(env, url)
    base = f"http://127.0.0.1:{port}"
    command = [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "benchmarks.floor_app:app"]
    with running(command, env, f"{base}/readyz", timeout=60):
        log(f"floor app on {backend} up; running submission")
        return {"submission": run_wrk("submission", base, args, BENCH_TOKEN=FLOOR_TOKEN)}


def run_service(backend: str, url: str, args: argparse.Namespace, tmp: Path, coral_file: Path) -> dict[str, Any]:
    """Start the service through boot.sh on `url`, seed the listing article and drive every scenario."""
    port = free_port()
    env = server_env(tmp, backend, port, MODERATION_DATABASE_URL=url, MODERATION_MODEL_DIR=str(ROOT / "model"),
                     MODERATION_RATELIMIT_ENABLED="0", MODERATION_CORAL_SIGNING_SECRETS=CORAL_SECRET)
    base = f"http://127.0.0.1:{port}"
    with running(["./boot.sh"], env, f"{base}/readyz", timeout=120):
        backend_token, moderator_token = create_key(env, "backend"), create_key(env, "moderator")
        out: dict[str, Any] = {"seed": seed_listing(base, backend_token, moderator_token)}
        log(f"{backend}: service up, listing article seeded ({out['seed']}); running scenarios")
        for scenario in args.scenarios:
            out[scenario] = run_wrk(scenario, base, args, BENCH_TOKEN=backend_token,
                                    BENCH_CORAL_FILE=str(coral_file))
            if scenario == "submission":
                out["rows"] = reconcile(url, out["submission"])
    return out


# --- the report --------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    echo = results["echo"]
    print(f"\nwrk {args.threads} threads, {args.connections} connections, {args.duration} s per scenario; "
          f"gunicorn.conf.py: 2 workers x {THREADS} threads (floor app: 1), preload; shipped model; "
          "rate limits off\n")
    header = (f"{'backend':<14} {'scenario':<11} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
              f"{'non-2xx':>8} {'sock err':>8} {'vs echo':>8}  statuses")
    print(header)
    print("-" * len(header))
    for backend, result in results.items():
        for scenario in (s for s in args.scenarios if s in result):
            r = result[scenario]
            ratio = f"{r['rps'] / echo[scenario]['rps']:.2f}x" if backend != "echo" else ""
            statuses = " ".join(f"{k}:{v}" for k, v in sorted(r["statuses"].items()))
            print(f"{backend:<14} {scenario:<11} {r['rps']:>9.1f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
                  f"{r['max_ms']:>8.2f} {r['non_2xx']:>8} {r['socket_errors']:>8} {ratio:>8}  {statuses}")
    print()
    for backend, result in results.items():
        if backend == "echo" or backend.startswith("floor"):
            continue
        seed = result["seed"]
        print(f"listing article ({backend}): {LISTING_COMMENTS} comments seeded through the API, "
              f"{seed['by_model']} approved by the model, {seed['by_moderator']} approved by a moderator key "
              "(POST /v1/moderation/comments/<id>/decision); thresholds unchanged")
        wrapped = result["coral"]["wrapped"] if "coral" in result else 0
        if wrapped:
            print(f"note ({backend}): coral ran out of pre-signed bodies {wrapped} times and repeated some")
    print()
    for backend, result in results.items():
        if backend == "echo":
            continue
        if "rows" not in result:
            continue
        rows = result["rows"]
        print(f"rows == 201s  {backend}: {rows['rows']} submission rows - {rows['cut_rows']} from the "
              f"{rows['cut_off']} requests wrk cut off at its deadline = {rows['rows'] - rows['cut_rows']}; "
              f"wrk counted {rows['created']} x 201 -> {verdict(rows['ok'])}")
    for backend, result in results.items():
        floor = results.get(f"floor-{backend}")
        if floor is not None and "submission" in result:
            served, least = result["submission"]["rps"], floor["submission"]["rps"]
            print(f"floor ({backend}): the least a submission must do reaches {least:.1f} req/s = "
                  f"{least / echo['submission']['rps']:.2f}x echo; the service does {served / least:.2f}x of that")
    print(f"\ntargets (measured at {args.connections} connections; the p99 target is stated for 16):")
    for backend, result in results.items():
        if backend == "echo" or backend.startswith("floor"):
            continue
        for scenario, share in TARGET_RATIO.items():
            if scenario not in args.scenarios:
                continue
            ratio = result[scenario]["rps"] / echo[scenario]["rps"]
            print(f"  [{verdict(ratio >= share)}] {backend:<9} {scenario} req/s >= {share}x echo: "
                  f"{result[scenario]['rps']:.1f} / {echo[scenario]['rps']:.1f} = {ratio:.2f}x")
        for scenario in args.scenarios:
            p99 = result[scenario]["p99_ms"]
            print(f"  [{verdict(p99 <= TARGET_P99_MS)}] {backend:<9} {scenario} p99 <= {TARGET_P99_MS:.0f} ms: "
                  f"{p99:.1f} ms")
        p99 = result["coral"]["p99_ms"] if "coral" in result else None
        if p99 is not None:
            print(f"  [{verdict(p99 <= CORAL_BUDGET_MS)}] {backend:<9} coral p99 <= {CORAL_BUDGET_MS:.0f} ms "
              f"(Coral's budget): {p99:.1f} ms")
        errors = {s: result[s]["non_2xx"] + result[s]["socket_errors"] for s in args.scenarios}
        print(f"  [{verdict(not any(errors.values()))}] {backend:<9} zero errors (non-2xx + socket): "
              + ", ".join(f"{s} {n}" for s, n in errors.items()))
        if "rows" not in result:
            continue
        rows = result["rows"]
        lost = rows["created"] - (rows["rows"] - rows["cut_rows"])
        print(f"  [{verdict(rows['ok'])}] {backend:<9} zero lost comments: {max(lost, 0)} lost, "
              f"{max(-lost, 0)} unexplained extra rows")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per scenario (default 10)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--skip-postgres", action="store_true", help="SQLite and the echo app only")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="admin connection that may create and drop bench_load_<pid>")
    parser.add_argument("--scenario", action="append", choices=SCENARIOS, dest="scenarios",
                        help="run only this scenario (repeatable; default: all)")
    args = parser.parse_args()
    args.scenarios = tuple(s for s in SCENARIOS if s in (args.scenarios or SCENARIOS))
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    if args.connections < args.threads:
        parser.error("--connections must be at least --threads")
    tmp = Path(tempfile.mkdtemp(prefix="bench-load-"))
    try:
        coral_file = tmp / "coral.tsv"
        # Enough distinct bodies that even a fast run does not repeat one (repeats are counted and printed).
        write_coral_bodies(coral_file, 2000 + 1500 * args.duration)
        results = {"echo": run_echo(args, tmp, coral_file)}
        if "submission" in args.scenarios:
            results["floor-sqlite"] = run_floor("sqlite", f"sqlite:///{tmp / 'floor.db'}", args, tmp)
        results["sqlite"] = run_service("sqlite", f"sqlite:///{tmp / 'load.db'}", args, tmp, coral_file)
        if not args.skip_postgres:
            if "submission" in args.scenarios:
                with scratch_postgres(args.postgres, "bench_floor", log) as url:
                    results["floor-postgres"] = run_floor("postgres", url, args, tmp)
            with scratch_postgres(args.postgres, "bench_load", log) as url:
                results["postgres"] = run_service("postgres", url, args, tmp, coral_file)
        report(results, args)
    except BaseException:
        for server_log in sorted(tmp.glob("*.log")):  # say why a server did not come up
            print(f"--- tail of {server_log.name}", file=sys.stderr)
            print(server_log.read_text(errors="replace")[-3000:], file=sys.stderr)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
