"""Print the CPU instructions one comment costs on the fast path, counted by valgrind.

    .venv/bin/python benchmarks/bench_instructions.py [--model DIR] [--comments N]
        [GERMEVAL2018_TSV GERMEVAL2021_CSV]

Wall-clock latency on this shared 2-core machine varies (the same model and code measured 0.226 ms
on 2026-11-25, 0.525 ms and 1.39 ms on 2026-12-01), so `bench_scoring.py`'s milliseconds cannot tell
whether a change to the scoring code made it cheaper. Instructions can: valgrind's callgrind counts
every instruction a process executes, nearly the same count for the same binary, inputs and
environment whatever else the machine is doing.

A child Python runs under `valgrind --tool=callgrind --dump-before=getppid`: it loads the model,
warms the fast path's word cache on 200 comments, then scores N more comments three times (`score`
with highlights, `score` without, `pipeline.predict_proba([text])`, in the order of
`bench_scoring.py`), calling `os.getppid()` between the loops. Each call makes callgrind write the
counts since the previous one, so each loop is counted on its own. The figures are means per comment
(the timing benchmark prints medians). The comments scored are the 201st to the (200+N)-th of the
timing benchmark's sample: the first comments of its first pass that the warm-up has not seen, where a
third of the word look-ups miss the word cache, so the count with highlights is on the high side; the
loops after it find those words cached. Needs
valgrind (Debian's package); under it the child runs about 50 times slower, so this takes four to ten
minutes (3m55s on 2026-12-02), most of it loading the model.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_scoring import DEFAULT_FILES, SAMPLE, sample_texts  # noqa: E402  (this folder is sys.path[0])

from moderation.ml.data import read_datasets  # noqa: E402

WARM = 200
MODES = [("explain", "fast path, with highlights"), ("plain", "fast path, no highlights"),
         ("predict_proba", "pipeline.predict_proba([text])")]

CHILD = f"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
from moderation.ml import load_model
model = load_model(sys.argv[2])
texts = json.load(open(sys.argv[3], encoding="utf-8"))
warm, scored = texts[:{WARM}], texts[{WARM}:]
for text in warm:
    model.score(text)
for text in warm[:10]:  # sklearn's first calls
    model.pipeline.predict_proba([text])
for score in (model.score, lambda t: model.score(t, explain=False), lambda t: model.pipeline.predict_proba([t])):
    os.getppid()  # callgrind writes the counts so far
    for text in scored:
        score(text)
os.getppid()
"""

_TOTALS_RE = re.compile(r"^totals:\s+(\d+)", re.MULTILINE)


def count_loops(valgrind: str, model_dir: str, sample: Path) -> list[int]:
    """Instructions of: load and warm-up, then each of the three scoring loops."""
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [valgrind, "--tool=callgrind", "--dump-before=getppid", f"--callgrind-out-file={tmp}/out",
             sys.executable, "-c", CHILD, str(ROOT), model_dir, str(sample)],
            capture_output=True, text=True, check=False,
            env={"PATH": "/usr/bin:/bin", "OPENBLAS_NUM_THREADS": "1", "PYTHONHASHSEED": "0"},
        )
        dumps = sorted(Path(tmp).glob("out.*"), key=lambda p: int(p.suffix[1:]))
        counts = [int(m.group(1)) for m in map(_TOTALS_RE.search, (p.read_text() for p in dumps)) if m]
    if done.returncode or len(counts) != 4:  # another getppid() call would shift every figure
        raise SystemExit(f"valgrind run failed ({done.returncode}, {len(counts)} dumps, 4 expected):\n"
                         f"{done.stderr[-2000:]}")
    return counts


def main(argv: list[str] | None = None) -> int:
    """Count and print instructions per comment."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="*", default=[str(p) for p in DEFAULT_FILES])
    parser.add_argument("--model", default=str(ROOT / "model"), help="model folder or root (default: the shipped one)")
    parser.add_argument("--comments", type=int, default=200, help="comments scored per loop (default %(default)s)")
    args = parser.parse_args(argv)
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    if not 1 <= args.comments <= SAMPLE - WARM:
        raise SystemExit(f"--comments must be between 1 and {SAMPLE - WARM}")
    data = read_datasets(args.data)
    texts = sample_texts(data.texts)[:WARM + args.comments]
    scored = len(texts) - WARM
    if scored < args.comments:
        raise SystemExit(f"the data give {len(texts)} comments of the sample; {WARM + args.comments} are needed")
    with tempfile.TemporaryDirectory() as tmp:
        sample = Path(tmp) / "sample.json"
        sample.write_text(json.dumps(texts), encoding="utf-8")
        base, *loops = count_loops(valgrind, args.model, sample)
    print(f"model {args.model}: {scored} comments (mean {sum(map(len, texts[WARM:])) / scored:.0f} chars) "
          f"after {WARM} to warm up; loading and warming up took {base / 1e9:.2f} G instructions")
    per = {}
    for (mode, label), total in zip(MODES, loops, strict=True):
        per[mode] = total / scored
        print(f"  {label:38s} {per[mode] / 1e6:8.3f} M instructions per comment (mean)")
    print(f"  predict_proba / fast path: {per['predict_proba'] / per['explain']:.1f}x with highlights, "
          f"{per['predict_proba'] / per['plain']:.1f}x without")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
