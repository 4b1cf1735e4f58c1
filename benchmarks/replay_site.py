"""Replay a labelled comment file as a site's stream: the real API under gunicorn, the labels as moderators,
the real `python -m moderation retrain` between batches.

    python benchmarks/replay_site.py --data GermEval21_TrainData.csv --base germeval2018.training.txt \\
        [--removal-rate 0.1] [--batches 4] [--seed 0] [--out reports/replay]
    python benchmarks/replay_site.py --data my-site.csv --model path/to/model-folder

1. The starting model must never have seen the file: `--base` trains one on other files first
   (`python -m moderation train`), `--model` takes a model folder. It serves as the shipped model of a
   fresh instance (its own SQLite database and model store in a temporary folder), at the default
   routing policy (MODERATION_MAX_LEAK 0.02, MIN_REJECT_PRECISION 0.95, EXPECTED_REMOVAL_RATE 0.10,
   AUDIT_RATE 0.02) unless --audit-rate says otherwise.
2. The file is sub-sampled to --removal-rate (every kept comment, a seeded random sample of the removed
   ones), shuffled (seeded) and cut into --batches batches. Comments go to one article per group of the
   file (GermEval 2021: blocks of 50 comment ids), each under its own author.
3. Per batch: submit every comment; the labels then decide every comment the service holds (audit
   samples included) through the moderation API with a moderator key; then `retrain` runs (a
   subprocess, as a timer would run it) and the service hot-reloads what it promoted.

Printed per batch: the model that served and the thresholds in force, the share decided without a
person (published + rejected by the model alone), the leak (removed share of the comments the model
published on its own, audited ones included) and the reject precision as the labels say, the same as the
service estimated them from its audit sample (the stats API, per model version, two-sided 95 %
Clopper-Pearson intervals), the serving model's ROC-AUC on the batch (its intake scores against the
labels of all the batch's comments), and what retrain did. Writes replay.json and replay.png to --out.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from sqlalchemy import create_engine, select  # noqa: E402

from moderation.ml.calibration import proportion_interval  # noqa: E402
from moderation.ml.data import read_dataset  # noqa: E402
from moderation.models import APPROVED, REJECTED, Comment  # noqa: E402
from tests.servers import BIN, free_port, running, service_env  # noqa: E402

PAGE = 100


def log(message: str) -> None:
    print(f"# [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def sample_stream(path: str, removal_rate: float, seed: int) -> list[tuple[str, int, str]]:
    """Return (text, label, group) rows: all kept, a seeded sample of the removed at `removal_rate`, shuffled."""
    data = read_dataset(path)
    rows = [(t, int(y), g) for t, y, g in zip(data.texts, data.labels, data.groups, strict=True) if t.strip()]
    kept = [r for r in rows if r[1] == 0]
    removed = [r for r in rows if r[1] == 1]
    rng = random.Random(seed)
    want = round(removal_rate / (1 - removal_rate) * len(kept))
    if want > len(removed):
        log(f"only {len(removed)} removed comments for the {want} a {removal_rate:.0%} rate needs: all are kept")
    stream = kept + rng.sample(removed, min(want, len(removed)))
    rng.shuffle(stream)
    return stream


def run_cli(env: dict[str, str], *args: str, timeout: float = 3600) -> subprocess.CompletedProcess:
    """Run `python -m moderation ARGS` as an operator would."""
    return subprocess.run([str(BIN / "python"), "-m", "moderation", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def initial_model(args: argparse.Namespace, work: Path, env: dict[str, str]) -> Path:
    """Return the starting model folder: --model, or one trained on the --base files."""
    if args.model:
        return Path(args.model).resolve()
    out = work / "prior"
    log(f"training the starting model on {', '.join(args.base)} (the classifier's full recipe)")
    done = run_cli(env, "train", *[a for path in args.base for a in ("--data", path)], "--out", str(out))
    if done.returncode != 0:
        raise SystemExit(f"training the starting model failed:\n{done.stderr[-3000:]}")
    return out


class Site:
    """The running service as the site's backend and its moderators use it."""

    def __init__(self, base: str, backend: str, moderator: str) -> None:
        self.base = base
        self.http = requests.Session()
        self.backend = {"Authorization": f"Bearer {backend}"}
        self.moderator = {"Authorization": f"Bearer {moderator}"}

    def submit(self, article: str, author: str, text: str) -> dict[str, Any] | None:
        """Submit one comment; None if the API refuses it (e.g. an empty text)."""
        answer = self.http.post(f"{self.base}/v1/articles/{article}/comments", headers=self.backend, timeout=60,
                                json={"author_id": author, "author_name": "Leser", "text": text})
        if answer.status_code == 201:
            return answer.json()
        log(f"submission refused: {answer.status_code} {answer.text[:200]}")
        return None

    def held(self) -> list[int]:
        """Return the ids of every comment waiting in the pending queue."""
        ids, cursor = [], None
        while True:
            params: dict[str, Any] = {"queue": "pending", "sort": "oldest", "limit": PAGE}
            if cursor:
                params["cursor"] = cursor
            page = self.http.get(f"{self.base}/v1/moderation/queue", headers=self.moderator, params=params,
                                 timeout=60)
            page.raise_for_status()
            body = page.json()
            ids += [item["id"] for item in body["comments"]]
            cursor = body.get("next_cursor")
            if not cursor:
                return ids

    def decide(self, comment_id: int, removed: bool) -> None:
        """Decide one held comment as the labels say."""
        answer = self.http.post(f"{self.base}/v1/moderation/comments/{comment_id}/decision", headers=self.moderator,
                                json={"decision": "reject" if removed else "approve"}, timeout=60)
        answer.raise_for_status()

    def policy(self) -> dict[str, Any]:
        answer = self.http.get(f"{self.base}/v1/moderation/policy", headers=self.moderator, timeout=60)
        answer.raise_for_status()
        return answer.json()

    def stats(self) -> dict[str, Any]:
        answer = self.http.get(f"{self.base}/v1/moderation/stats", headers=self.moderator, timeout=60)
        answer.raise_for_status()
        return answer.json()

    def wait_for_version(self, version: str, timeout: float = 120) -> None:
        """Wait until the service answers with `version` (hot reload of a promotion)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.http.get(f"{self.base}/readyz", timeout=10).json().get("model_version") == version:
                return
            time.sleep(0.5)
        raise SystemExit(f"the service did not switch to {version} within {timeout:.0f}s")


def share(k: int, n: int) -> dict[str, Any]:
    """A share with its two-sided 95 % Clopper-Pearson interval."""
    interval = proportion_interval(k, n)
    return {"k": k, "n": n, "share": k / n if n else None,
            "low": interval[0] if interval else None, "high": interval[1] if interval else None}


def batch_figures(engine, ids: dict[int, int]) -> dict[str, Any]:
    """What the model did alone with this batch's comments, measured by the labels."""
    with engine.connect() as conn:
        rows = conn.execute(select(Comment.id, Comment.auto_route, Comment.audited, Comment.model_version,
                                   Comment.toxicity).where(Comment.id.in_(list(ids)))).all()
    published = [ids[r.id] for r in rows if r.auto_route == APPROVED]
    rejected = [ids[r.id] for r in rows if r.auto_route == REJECTED]
    automated = sum(1 for r in rows if r.auto_route is not None and not r.audited)
    return {
        "comments": len(rows), "removed": sum(ids.values()),
        "automated": automated, "automation": automated / len(rows) if rows else 0.0,
        "published_alone": sum(1 for r in rows if r.auto_route == APPROVED and not r.audited),
        "rejected_alone": sum(1 for r in rows if r.auto_route == REJECTED and not r.audited),
        "audited": sum(1 for r in rows if r.audited),
        "leak": share(sum(published), len(published)),
        "reject_precision": share(sum(rejected), len(rejected)),
        "versions": sorted({r.model_version for r in rows}),
        "serving_auc": serving_auc([ids[r.id] for r in rows], [r.toxicity for r in rows]),
    }


def serving_auc(labels: list[int], scores: list[float]) -> float | None:
    """The serving model's ROC-AUC on a batch: its intake scores against the labels (every comment has one)."""
    if len(set(labels)) < 2:
        return None
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def fmt_share(s: dict[str, Any]) -> str:
    if not s or not s.get("n") and not s.get("decided"):
        return "–"
    if "decided" in s:  # the stats API's shape
        return f"{s['share'] * 100:.1f}% [{s['low'] * 100:.1f}–{s['high'] * 100:.1f}] n={s['decided']}"
    return f"{s['share'] * 100:.1f}% [{s['low'] * 100:.1f}–{s['high'] * 100:.1f}] n={s['n']}"


def table(batches: list[dict[str, Any]]) -> str:
    """Return the per-batch table as Markdown."""
    head = ("| batch | comments | model | approve < | reject ≥ | removal rate used | decided alone | leak (labels) "
            "| reject precision (labels) | leak (service, audit) | reject precision (service, audit) "
            "| serving ROC-AUC (labels) | retrain |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for b in batches:
        service = b.get("service") or {}
        lines.append(
            f"| {b['batch']} | {b['comments']} | {b['model']} | {b['approve']:.4f} | {b['reject']:.4f} | "
            f"{b['removal_rate_used']:.3f} | {b['automation'] * 100:.1f}% ({b['published_alone']} published, "
            f"{b['rejected_alone']} rejected) | {fmt_share(b['leak'])} | {fmt_share(b['reject_precision'])} | "
            f"{fmt_share(service.get('leak'))} | {fmt_share(service.get('reject_precision'))} | "
            f"{'–' if b.get('serving_auc') is None else format(b['serving_auc'], '.3f')} | {b['retrain']} |")
    return "\n".join(lines)


def plot(batches: list[dict[str, Any]], max_leak: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [b["batch"] for b in batches]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.bar(x, [b["automation"] * 100 for b in batches], color="#4c72b0")
    left.set(xlabel="batch", ylabel="decided without a person (%)", title="Automation", xticks=x)
    shown = [b for b in batches if b["leak"]["n"]]  # a batch that published nothing alone has no leak
    leaks = [b["leak"]["share"] * 100 for b in shown]
    errors = [[leak - b["leak"]["low"] * 100 for leak, b in zip(leaks, shown, strict=True)],
              [b["leak"]["high"] * 100 - leak for leak, b in zip(leaks, shown, strict=True)]]
    right.errorbar([b["batch"] for b in shown], leaks, yerr=errors, fmt="o", capsize=4, label="labels (95% CI)")
    for b in batches:
        if not b["leak"]["n"]:
            right.annotate("nothing\npublished alone", (b["batch"], 0), ha="center", fontsize=7)
    right.axhline(max_leak * 100, linestyle="--", color="black", linewidth=0.8, label="budget")
    right.set(xlabel="batch", ylabel="removed share of auto-published (%)", title="Leak", xticks=x,
              xlim=(0.5, x[-1] + 0.5))
    right.set_ylim(bottom=0)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def replay(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="replay-", dir=args.workdir))
    stream = sample_stream(args.data, args.removal_rate, args.seed)
    log(f"{len(stream)} comments, {sum(r[1] for r in stream)} removed ({sum(r[1] for r in stream) / len(stream):.1%}); "
        f"{args.batches} batches; working in {work}")
    env = service_env(MODERATION_DATABASE_URL=f"sqlite:///{work / 'replay.db'}",
                      MODERATION_MODEL_STORE=str(work / "store"), MODERATION_RATELIMIT_ENABLED="0",
                      MODERATION_AUDIT_RATE=str(args.audit_rate), MODERATION_MODEL_RELOAD_SECONDS="1",
                      WEB_CONCURRENCY=str(args.workers), GUNICORN_THREADS="1", SERVER_LOG=str(work / "server.log"))
    model = initial_model(args, work, env)
    env["MODERATION_MODEL_DIR"] = str(model)
    port = free_port()
    env["PORT"] = str(port)
    base = f"http://127.0.0.1:{port}"
    engine = create_engine(env["MODERATION_DATABASE_URL"])
    size = -(-len(stream) // args.batches)
    batches: list[dict[str, Any]] = []
    with running(["./boot.sh"], env, f"{base}/readyz", timeout=180):
        keys = [run_cli(env, "keys", "create", "--role", role, "--name", f"replay-{role}") for role in
                ("backend", "moderator")]
        site = Site(base, keys[0].stdout.strip(), keys[1].stdout.strip())
        for number in range(1, args.batches + 1):
            rows = stream[(number - 1) * size:number * size]
            policy = site.policy()
            ids: dict[int, int] = {}
            for i, (text, label, group) in enumerate(rows):
                answer = site.submit(f"replay-{group.split(':')[-1]}", f"leser-{number}-{i}", text)
                if answer is not None:
                    ids[answer["id"]] = label
            held = site.held()
            for comment_id in held:
                site.decide(comment_id, bool(ids.get(comment_id, 0)))
            figures = batch_figures(engine, ids)
            versions = site.stats()["audit"]["by_model_version"]
            service = next((v for v in versions if v["model_version"] == policy["model_version"]), None)
            expected = policy.get("expected") or {}
            row = {"batch": number, **figures, "model": policy["model_version"],
                   "approve": policy["thresholds"]["approve"], "reject": policy["thresholds"]["reject"],
                   "removal_rate_used": (expected.get("removal_rate") if expected else None)
                   or policy["policy"]["expected_removal_rate"],
                   "expected_automation": expected.get("automated_share"), "decided_by_labels": len(held),
                   "service": service, "retrain": "–"}
            if number < args.batches:
                log(f"batch {number}: {figures['automation']:.1%} decided alone; retraining")
                done = run_cli(env, "retrain", "--report", str(out / f"retrain-{number}"), *args.retrain_args)
                (out / f"retrain-{number}.log").write_text(done.stderr + done.stdout, encoding="utf-8")
                if done.returncode != 0:
                    row["retrain"] = f"failed: {done.stderr.strip().splitlines()[-1][:120]}"
                else:
                    result = json.loads(done.stdout)
                    if "skipped" in result:
                        row["retrain"] = "skipped"
                    else:
                        gate = result["gate"]
                        auc = (f"AUC {gate['candidate']:.3f} vs {gate['current']:.3f}"
                               if gate.get("candidate") is not None else "no gate")
                        row["retrain"] = f"{'promoted' if result['promoted'] else 'refused'} {result['candidate']} " \
                                         f"({auc})"
                        row["retrain_result"] = result
                        if result["promoted"]:
                            site.wait_for_version(result["candidate"])
            batches.append(row)
            log(f"batch {number}: " + json.dumps({k: row[k] for k in ("comments", "automation", "model")}))
    engine.dispose()
    figures = {"data": str(args.data), "removal_rate": args.removal_rate, "batches": args.batches, "seed": args.seed,
               "audit_rate": args.audit_rate, "starting_model": str(model), "rows": batches}
    (out / "replay.json").write_text(json.dumps(figures, indent=2, default=str) + "\n", encoding="utf-8")
    plot(batches, 0.02, out / "replay.png")
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="Labelled comment file (any format the training readers read).")
    parser.add_argument("--removal-rate", type=float, default=0.1)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--model", help="Starting model folder (must never have seen --data).")
    parser.add_argument("--base", action="append", default=[], help="Train the starting model on this file (repeat).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--audit-rate", type=float, default=0.02)
    parser.add_argument("--workers", type=int, default=1, help="gunicorn workers.")
    parser.add_argument("--out", default="reports/replay")
    parser.add_argument("--workdir", default=None, help="Where the temporary instance goes (default: the system's).")
    parser.add_argument("--retrain-arg", dest="retrain_args", action="append", default=[],
                        help="Extra argument for every `retrain` (repeat), e.g. --retrain-arg=--tolerance=0.02.")
    args = parser.parse_args(argv)
    if bool(args.model) == bool(args.base):
        parser.error("give either --model or --base")
    figures = replay(args)
    print(f"replay of {args.data} at a {args.removal_rate:.0%} removal rate, seed {args.seed}, "
          f"{args.batches} batches, audit rate {args.audit_rate}")
    print(table(figures["rows"]))
    print(f"wrote {Path(args.out) / 'replay.json'} and {Path(args.out) / 'replay.png'}")


if __name__ == "__main__":
    main()
