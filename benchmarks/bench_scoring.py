"""Print scoring latency, throughput, training time, artifact size and peak RSS.

    .venv/bin/python benchmarks/bench_scoring.py [GERMEVAL2018_TSV GERMEVAL2021_CSV]
        [--model DIR]   # benchmark an existing model folder (or model root) instead of training one
        [--word-cache N]  # size of the fast path's per-word cache; 0 measures every word uncached

Without --model it trains on all rows of the given files (timed) into a temporary folder
and benchmarks that model. Latencies are per comment over a sample of the training texts.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from moderation.ml import fastpath, load_model, train_and_save  # noqa: E402
from moderation.ml.data import read_datasets  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
DEFAULT_FILES = [DATA / "germeval2018" / "germeval2018.training.txt",
                 DATA / "germeval2021" / "GermEval21_TrainData.csv"]
SAMPLE = 2000

RSS_PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
from moderation.ml import fastpath, load_model
fastpath.WORD_CACHE_SIZE = int(sys.argv[4])
model = load_model(sys.argv[2])
texts = json.load(open(sys.argv[3], encoding="utf-8"))
for text in texts:
    model.score(text)
# VmHWM, not ru_maxrss: the latter inherits the parent's peak across fork + exec.
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")))
"""


def sample_texts(texts: list[str]) -> list[str]:
    """The comments every scoring benchmark measures: SAMPLE of them, evenly spread over the data."""
    step = max(1, len(texts) // SAMPLE)
    return texts[::step][:SAMPLE]


def latencies(fn, texts: list[str]) -> list[float]:
    out = []
    for text in texts:
        start = time.perf_counter()
        fn(text)
        out.append(time.perf_counter() - start)
    return out


def _summary(name: str, seconds: list[float]) -> tuple[float, float]:
    ordered = sorted(seconds)
    median = statistics.median(ordered) * 1e3
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1e3
    print(f"  {name:46s} median {median:7.3f} ms   p99 {p99:7.3f} ms")
    return median, p99


def machine_reference_ms() -> float:
    """What `sum(range(10**6))` takes today, in ms: the machine's speed for plain Python loops."""
    return min(timeit.repeat("sum(range(10**6))", number=10, repeat=5)) / 10 * 1e3


def _scoring_pass(name: str, model, texts: list[str]) -> tuple[float, float]:
    """Print the latencies of `model.score` over the texts; return the median and the share of word
    look-ups that missed the fast path's word cache meanwhile."""
    before = model._fast._analyse.cache_info()
    median, _ = _summary(name, latencies(model.score, texts))
    after = model._fast._analyse.cache_info()
    misses = after.misses - before.misses
    return median, misses / max(1, misses + after.hits - before.hits)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="*", default=[str(p) for p in DEFAULT_FILES])
    parser.add_argument("--model", help="existing model folder (skips training)")
    parser.add_argument("--word-cache", type=int, default=fastpath.WORD_CACHE_SIZE,
                        help="words whose analysis the fast path keeps (default %(default)s; 0: none)")
    args = parser.parse_args(argv)
    fastpath.WORD_CACHE_SIZE = args.word_cache
    data = read_datasets(args.data)
    # The machine's speed on the day: this shared machine has run the same code 2-4x slower on some
    # days than on others. `bench_instructions.py` counts what does not depend on it.
    reference = machine_reference_ms()
    print(f"machine reference: sum(range(10**6)) takes {reference:.1f} ms "
          f"(python -m timeit \"sum(range(10**6))\")")
    print(f"data: {', '.join(s['path'] for s in data.sources)} ({len(data.texts)} rows)")

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model
        if model_dir is None:
            model_dir = tmp
            start = time.perf_counter()
            train_and_save(data.texts, data.labels, model_dir, categories=data.categories,
                           groups=data.groups, domains=data.domains, files=data.files, sources=data.sources)
            print(f"training on all rows (grouped 5-fold CV + final fit): "
                  f"{time.perf_counter() - start:.1f} s")
        model = load_model(model_dir)
        artifact = model.path / model.metadata["artifact"]["file"]  # a root resolves to its version
        print(f"model {model.version}: artifact {artifact.stat().st_size / 2**20:.2f} MiB, "
              f"fast-path word cache {args.word_cache}")

        texts = sample_texts(data.texts)
        mean_len = statistics.mean(len(t) for t in texts)
        print(f"single-comment latency over {len(texts)} comments (mean {mean_len:.0f} chars):")
        for text in texts[:200]:  # warm caches
            model.score(text)
            model.pipeline.predict_proba([text])
        fast, first_missed = _scoring_pass("fast path, with highlights", model, texts)
        plain, _ = _summary("fast path, no highlights",
                            latencies(lambda t: model.score(t, explain=False), texts))
        slow, _ = _summary("pipeline.predict_proba([text])",
                           latencies(lambda t: model.pipeline.predict_proba([t]), texts))
        print(f"  speed-up vs predict_proba: {slow / fast:.1f}x with highlights, "
              f"{slow / plain:.1f}x without")
        # The first pass meets many words for the first time; a server that has run for a while has
        # the frequent ones in its word cache. The same comments once more show that end of the range.
        _, second_missed = _scoring_pass("fast path, with highlights, 2nd pass", model, texts)
        # Between the two: a scorer with an empty word cache that first scores every other row of the
        # data, as a server that has been running, then the sample once. Its rare words are new to it.
        steady = copy.copy(model)
        steady._fast = fastpath.FastScorer(model.pipeline, model.category_head, model.threat_head)
        chosen = set(texts)
        others = [text for text in data.texts if text not in chosen]
        for text in others:
            steady.score(text)
        _, steady_missed = _scoring_pass(f"fast path, with highlights, after {len(others):,} others", steady, texts)
        print(f"  word look-ups that missed the word cache (new or evicted words): {first_missed:.0%} on the "
              f"first pass, {second_missed:.0%} on the 2nd, {steady_missed:.0%} after the others")

        start = time.perf_counter()
        model.score_many(texts, explain=False)
        fast_rate = len(texts) / (time.perf_counter() - start)
        start = time.perf_counter()
        model.score_many(texts)
        explain_rate = len(texts) / (time.perf_counter() - start)
        start = time.perf_counter()
        model.pipeline.predict_proba(texts)
        batch_rate = len(texts) / (time.perf_counter() - start)
        print(f"batch throughput: score_many {fast_rate:,.0f} comments/s without highlights, "
              f"{explain_rate:,.0f} with; predict_proba(batch) {batch_rate:,.0f} comments/s")

        sample_file = Path(tmp) / "sample.json"
        sample_file.write_text(json.dumps(texts[:500]), encoding="utf-8")
        probe = subprocess.run(
            [sys.executable, "-c", RSS_PROBE, str(ROOT), str(model_dir), str(sample_file),
             str(args.word_cache)],
            capture_output=True, text=True, check=True,
        )
        rss_kib = int(probe.stdout.strip().splitlines()[-1])
        print(f"peak RSS of a fresh process that loads the model and scores 500 comments: "
              f"{rss_kib / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
