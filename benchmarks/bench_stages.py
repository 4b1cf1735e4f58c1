"""Print what each stage of the fast path costs inside the scoring sequence and on its own.

    .venv/bin/python benchmarks/bench_stages.py [--model DIR] [GERMEVAL2018_TSV GERMEVAL2021_CSV]

`LoadedModel.score` runs these stages one after the other for each comment. Here they run in the
same order on the timing benchmark's 2,000 comments, each timed by itself (medians per comment, warm
word cache: the comments are scored once before), then each alone over all the comments, one loop
per stage. `encode` segments the comment itself; segmentation is also timed alone, to show its part.
Left out: the mapping of word weights to spans, the encoder's dot product, the category head (only
for offensive comments) and building the result; the last line, `score` itself over the same
comments, shows what they and the calls between the stages add. A stage that costs more in the
sequence than alone is slowed by what the others did before it, most likely by the data they pushed
out of the processor's caches (this machine gives no cache counters to confirm it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_scoring import DEFAULT_FILES, latencies, machine_reference_ms, sample_texts  # noqa: E402  (this folder is sys.path[0])

from moderation.ml import load_model  # noqa: E402
from moderation.ml.data import read_datasets  # noqa: E402
from moderation.ml.model import _highlights  # noqa: E402
from moderation.ml.normalize import normalize_with_offsets  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Run the stages and print their medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="*", default=[str(p) for p in DEFAULT_FILES])
    parser.add_argument("--model", default=str(ROOT / "model"), help="model folder or root (default: the shipped one)")
    args = parser.parse_args(argv)
    texts = [text for text in sample_texts(read_datasets(args.data).texts) if text.strip()]
    model = load_model(args.model)
    fast = model._fast
    if fast._encoder is None:
        parser.error("the model has no encoder features")
    encoder = fast._encoder[0]
    print(f"machine reference: sum(range(10**6)) takes {machine_reference_ms():.1f} ms; model {model.version}; "
          f"{len(texts)} comments")
    for text in texts:
        model.score(text)
    normalized = {text: normalize_with_offsets(text, fast._unmask) for text in texts}
    explained = {text: fast.explain(text) for text in texts}
    stages = {
        "normalise, with offsets": lambda text: normalize_with_offsets(text, fast._unmask),
        "n-grams: logit and word weights": lambda text: fast.score_normalized(normalized[text][0], explain=True),
        "style counts": fast.style_logit,
        "encoder: encode (segments too)": encoder.encode,
        "highlights from word weights": lambda text: _highlights(text, explained[text][2]),
    }
    in_sequence: dict[str, list[float]] = {name: [] for name in stages}
    total = []
    for text in texts:
        began = time.perf_counter()
        for name, stage in stages.items():
            start = time.perf_counter()
            stage(text)
            in_sequence[name].append(time.perf_counter() - start)
        total.append(time.perf_counter() - began)
    print(f"{'stage':34s} {'in sequence':>12s} {'alone':>10s}   (median per comment)")
    alone_sum = 0.0
    for name, stage in stages.items():
        alone = statistics.median(latencies(stage, texts)) * 1e6
        alone_sum += alone
        print(f"{name:34s} {statistics.median(in_sequence[name]) * 1e6:9.1f} µs {alone:7.1f} µs")
        if stage == encoder.encode:  # segmentation is part of it; `score` never runs it on its own
            segmenting = statistics.median(latencies(encoder.segmenter.rows, texts)) * 1e6
            print(f"{'  of which segmentation':34s} {'':>12s} {segmenting:7.1f} µs")
    print(f"{'the stages, in sequence / alone':34s} {statistics.median(total) * 1e6:9.1f} µs {alone_sum:7.1f} µs"
          "   (median of the sums / sum of the medians)")
    print(f"{'score itself':34s} {statistics.median(latencies(model.score, texts)) * 1e6:9.1f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
