"""lm-evaluation-harness on an exported tiny model agrees with the framework's own zero-shot scorer."""

import pathlib

import numpy as np
import pytest
import sentencepiece as spm

from hf_helpers import tiny_config, vocab_size, write_random_run
from visual_priors import cli
from visual_priors.analysis.results import ResultsStore
from visual_priors.eval import zero_shot
from visual_priors.interop import lm_harness
from visual_priors.train import upstream

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def test_lm_eval_on_an_export_matches_the_zero_shot_scorer(spm_vocab, tmp_path):
  pytest.importorskip("lm_eval", reason="the lm-eval extra (pip install -e '.[lm-eval]')")
  run = write_random_run(tmp_path / "run", tiny_config(vocab_size(spm_vocab), tie=False), spm_vocab, seed=5,
                         seq_len=128)
  tasks = tmp_path / "tasks"
  tasks.mkdir()
  data = FIXTURES / "piqa_tiny.jsonl"
  (tasks / "piqa_tiny.yaml").write_text((FIXTURES / "piqa_tiny.yaml").read_text().replace("DATA_FILE", str(data)))
  assert cli.main(["eval", "lm-harness", str(run), "--tasks", "vp_piqa_tiny", "--include-path", str(tasks),
                   "--results", str(tmp_path / "results"), "--run-name", "tiny", "--batch-size", "4"]) == 0
  stored = ResultsStore(tmp_path / "results").frame()
  assert set(stored["run"]) == {"tiny"} and set(stored["stage"]) == {"pretrain"}
  assert set(stored["benchmark"]) == {f"{lm_harness.BENCHMARK_PREFIX}vp_piqa_tiny"}
  theirs = dict(zip(stored["metric"], stored["value"]))
  assert {"acc", "acc_norm", "acc_stderr", "acc_norm_stderr"} <= set(theirs)
  assert (run / lm_harness.EXPORT_SUBDIR / lm_harness.RAW_RESULTS).is_file()

  decoder, _ = upstream.load_trained(run)
  processor = spm.SentencePieceProcessor(model_file=str(spm_vocab))
  items = zero_shot.read_items(data, "piqa")
  scores = zero_shot.choice_scores(decoder, processor.encode, items, seq_len=128, batch_size=4)
  ours = zero_shot.accuracies(items, scores)
  assert ours["accuracy"] == pytest.approx(theirs["acc"])
  # lm-eval's acc_norm divides by the choice's characters without the leading space (documented in
  # visual_priors/interop/lm_harness.py); computed that way from the framework's scores it agrees too.
  lengths = [np.array([len(c.lstrip(" ")) for c in item.continuations], float) for item in items]
  norm = np.mean([np.argmax(s / n) == item.label for item, s, n in zip(items, scores, lengths)]) * 100
  assert norm == pytest.approx(theirs["acc_norm"])
  assert stored.set_index("metric").loc["acc", "count"] == len(items)
