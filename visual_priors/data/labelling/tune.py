"""`python -m visual_priors.data.labelling.tune`: tune the lexicon thresholds on the dev split, report both splits."""

from __future__ import annotations

import argparse
import pathlib

from visual_priors.data import cache, categories
from visual_priors.data.labelling import evaluate, lexicon


def tune(lexicon_dir: pathlib.Path = lexicon.LEXICON_DIR) -> dict:
  """Tunes thresholds on the dev split and writes them to <lexicon_dir>/thresholds.json; returns that record."""
  dev = evaluate.load_handlabelled("dev")
  scorer = lexicon.LexiconLabeller(lexicon_dir, thresholds={label: 0.0 for label in categories.LABELS})
  thresholds = lexicon.tune_thresholds([scorer.scores(s.text) for s in dev], [s.labels for s in dev])
  tuned = lexicon.LexiconLabeller(lexicon_dir, thresholds=thresholds)
  dev_f1 = evaluate.evaluate(tuned, dev)
  record = {
      "thresholds": {label: round(value, 4) for label, value in thresholds.items()},
      "lexicon_digest": scorer.lexicons.digest,
      "tuned_on": f"{evaluate.HANDLABELLED.name} split=dev ({len(dev)} segments)",
      "dev_f1": {label: round(s.f1, 4) for label, s in dev_f1.per_label.items()},
      "dev_micro_f1": round(dev_f1.micro.f1, 4),
  }
  cache.write_json_atomic(pathlib.Path(lexicon_dir) / lexicon.THRESHOLDS_FILE, record)
  return record


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--lexicon_dir", default=str(lexicon.LEXICON_DIR))
  args = parser.parse_args(argv)
  record = tune(pathlib.Path(args.lexicon_dir))
  print("thresholds (hits per 100 words):", record["thresholds"])
  labeller = lexicon.LexiconLabeller(args.lexicon_dir)
  for split in evaluate.SPLITS:
    print(evaluate.format_evaluation(evaluate.evaluate(labeller, evaluate.load_handlabelled(split)),
                                     f"lexicon labeller, {split} split"))
  speed = evaluate.throughput(labeller, [s.text for s in evaluate.load_handlabelled()])
  print(f"speed: {speed['segments_per_s']:.0f} segments/s, {speed['mb_per_s']:.2f} MB/s (one core)")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
