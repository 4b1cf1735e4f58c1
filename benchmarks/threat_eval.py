"""Print what a model's threat head was measured on, and how it does on the team's functional suite.

    .venv/bin/python benchmarks/threat_eval.py [--model model] [--suite benchmarks/functional/cases.jsonl]

First the figures training recorded in metadata.json's `threat` (threshold, out-of-fold recall on the
threat rows and false-alarm rate on the others; slightly optimistic, since the features come from the
fit on all rows). Then, per category of the functional suite (never used for training), the share of
cases the head flags as likely threats (reason `threat_likely`): for `threat` and `call_to_violence`
that is the recall, for the publishable categories the false alarms. A model without a threat head
says so and exits with 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from moderation.ml import load_model  # noqa: E402
from moderation.ml.functional import EXPECTED_LABEL, read_cases  # noqa: E402

THREAT_CATEGORIES = ("threat", "call_to_violence")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "model", help="model folder or store")
    parser.add_argument("--suite", type=Path, default=ROOT / "benchmarks" / "functional" / "cases.jsonl")
    args = parser.parse_args(argv)
    model = load_model(args.model)
    print(f"model {model.version}")
    if not model.has_threat_head:
        print("no threat head: Perspective's THREAT is unsupported and no comment is held as threat_likely")
        return 1
    print("threat head, as training measured it (metadata.json `threat`):")
    print(json.dumps(model.metadata["threat"], indent=2, ensure_ascii=False))
    flagged: dict[str, list[bool]] = defaultdict(list)
    for case in read_cases(args.suite):
        flagged[case.category].append(model.score(case.text, explain=False).threat_likely)
    print(f"\nfunctional suite {args.suite.name}: share flagged threat_likely (threshold "
          f"{model.threat_threshold:.3f})")
    print(f"{'category':<26}{'cases':>6}{'flagged':>9}  reads as")
    for category, hits in flagged.items():
        expected = EXPECTED_LABEL.get(category)
        kind = ("recall" if category in THREAT_CATEGORIES else "false alarms" if expected == 0
                else "other offences (not threats)" if expected == 1 else "mixed labels")
        print(f"{category:<26}{len(hits):>6}{sum(hits) / len(hits):>9.3f}  {kind}")
    both = [hit for category in THREAT_CATEGORIES for hit in flagged.get(category, [])]
    if both:
        print(f"{'threat + call_to_violence':<26}{len(both):>6}{sum(both) / len(both):>9.3f}  recall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
