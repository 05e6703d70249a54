"""The VQA steps with a fake `generate`: resumable predictions, scoring without a model, tabulated rows."""

from __future__ import annotations

import json
import sys
import types

import pytest

from visual_priors.data.multimodal.generate import generate as generate_data
from visual_priors.eval import vqa
from visual_priors.eval.benchmarks import load_benchmark, make_item
from visual_priors.names import UnknownNameError


def _items():
  """Two General benchmarks and one Knowledge benchmark, three questions each, with known replies."""
  items = []
  for benchmark, group in (("gqa", "General"), ("mme", "General"), ("mmmu", "Knowledge")):
    for k in range(3):
      if benchmark == "gqa":
        item = make_item(benchmark, group, id=f"{k}", image=b"png", question=f"What colour is shape {k}?",
                         choices=None, answer="red", type="open")
      elif benchmark == "mme":
        item = make_item(benchmark, group, id=f"{k}", image=b"png", question=f"Is there a dog {k}?",
                         choices=None, answer="Yes", type="yes_no")
      else:
        item = make_item(benchmark, group, id=f"{k}", image=b"png", question=f"Which is prime {k}?",
                         choices=["4", "6", "7"], answer="7", type="mc")
      items.append(item)
  return items


# With the image: gqa 2/3, mme 1/3, mmmu 3/3 correct. Blind: gqa 0/3, mme 3/3 (always "yes"), mmmu 1/3.
_SIGHTED = {"gqa": ["Red.", "red", "blue"], "mme": ["Yes", "No", "no"],
            "mmmu": ["C", "The answer is (C)", "7"]}
_BLIND = {"gqa": ["green"] * 3, "mme": ["yes"] * 3, "mmmu": ["C", "A", "4"]}


class FakeGenerate:
  """A deterministic reply per prompt; counts the requests it answers; can fail after `fail_after` calls."""

  def __init__(self, items, fail_after: int | None = None):
    self.replies = {}
    for item in items:
      k = int(item["id"])
      self.replies[(item["prompt"], False)] = _SIGHTED[item["benchmark"]][k]
      self.replies[(item["prompt"], True)] = _BLIND[item["benchmark"]][k]
    self.fail_after = fail_after
    self.calls, self.asked = 0, []

  def __call__(self, requests, *, blind=False):
    if self.fail_after is not None and self.calls >= self.fail_after:
      raise RuntimeError("device lost")
    self.calls += 1
    self.asked.extend((r["prompt"], blind) for r in requests)
    assert all(r["image"] == b"png" for r in requests)  # images travel with the request, blind or not
    return [self.replies[(r["prompt"], blind)] for r in requests]


def _lines(path):
  return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_predictions_are_chunked_and_skipped_when_done(tmp_path):
  items, path = _items(), tmp_path / "predictions.jsonl"
  fake = FakeGenerate(items)
  assert vqa.generate_predictions(items, fake, path, batch_size=4) == 9
  assert fake.calls == 3  # 4 + 4 + 1
  records = _lines(path)
  assert [(r["benchmark"], r["id"], r["blind"]) for r in records] == [(i["benchmark"], i["id"], False) for i in items]
  assert records[0]["output"] == "Red."
  assert vqa.generate_predictions(items, fake, path, batch_size=4) == 0 and fake.calls == 3
  assert vqa.generate_predictions(items, fake, path, blind=True, batch_size=4) == 9  # blind is a separate key
  assert len(_lines(path)) == 18


def test_a_crash_halfway_resumes_without_repeating(tmp_path):
  items, path = _items(), tmp_path / "predictions.jsonl"
  crashing = FakeGenerate(items, fail_after=2)
  with pytest.raises(RuntimeError, match="device lost"):
    vqa.generate_predictions(items, crashing, path, batch_size=2)
  assert len(_lines(path)) == 4  # the two finished chunks are on disk
  resumed = FakeGenerate(items)
  assert vqa.generate_predictions(items, resumed, path, batch_size=2) == 5
  asked_twice = set(p for p, _ in crashing.asked) & set(p for p, _ in resumed.asked)
  assert not asked_twice
  keys = [(r["benchmark"], r["id"]) for r in _lines(path)]
  assert sorted(keys) == sorted((i["benchmark"], i["id"]) for i in items) and len(set(keys)) == 9


def test_a_torn_last_line_is_dropped_and_redone(tmp_path):
  items, path = _items(), tmp_path / "predictions.jsonl"
  vqa.generate_predictions(items[:2], FakeGenerate(items), path)
  with open(path, "a", encoding="utf-8") as f:
    f.write('{"benchmark": "gqa", "id": "2", "bli')  # a write cut short
  assert set(vqa.read_predictions(path)) == {("gqa", "0", False), ("gqa", "1", False)}
  assert vqa.generate_predictions(items, FakeGenerate(items), path) == 7
  assert len(_lines(path)) == 9  # every line parses


def test_predictions_for_other_prompts_are_refused(tmp_path):
  items, path = _items(), tmp_path / "predictions.jsonl"
  vqa.generate_predictions(items, FakeGenerate(items), path)
  changed = [dict(items[0], prompt="another prompt")] + items[1:]
  with pytest.raises(ValueError, match="another prompt"):
    vqa.generate_predictions(changed, FakeGenerate(items), path)


def test_generate_must_answer_every_request(tmp_path):
  items = _items()
  with pytest.raises(ValueError, match="2 replies for 3 requests"):
    vqa.generate_predictions(items[:3], lambda requests, blind: ["x", "y"], tmp_path / "p.jsonl")


def test_score_needs_no_model_and_checks_coverage(tmp_path):
  items, path = _items(), tmp_path / "predictions.jsonl"
  vqa.generate_predictions(items, FakeGenerate(items), path)
  scores_path = vqa.score(path, items)
  assert scores_path == tmp_path / "scores.jsonl"
  records = {(r["benchmark"], r["id"]): r for r in vqa.read_scores(scores_path)}
  assert [records[("gqa", k)]["score"] for k in "012"] == [1.0, 1.0, 0.0]
  assert [records[("mme", k)]["score"] for k in "012"] == [1.0, 0.0, 0.0]
  assert [records[("mmmu", k)]["extracted"] for k in "012"] == [2, 2, 2]
  again = vqa.score(path, items, tmp_path / "again.jsonl")
  assert again.read_text() == scores_path.read_text()
  with pytest.raises(ValueError, match="1 of 10 questions have no reply"):
    vqa.score(path, items + [make_item("gqa", "General", id="9", image=None, question="q", choices=None,
                                       answer="a", type="open")])
  with pytest.raises(ValueError, match="generated for another prompt"):
    vqa.score(path, [dict(items[0], prompt="changed")] + items[1:])
  with pytest.raises(ValueError, match="no replies to these"):
    vqa.score(tmp_path / "absent.jsonl", items)


def _rows_by_key(rows):
  return {(r["benchmark"], r["metric"]): r for r in rows}


def test_tabulate_benchmarks_groups_overall_and_blind(tmp_path):
  items, path = _items(), tmp_path / "predictions.jsonl"
  for blind in (False, True):
    vqa.generate_predictions(items, FakeGenerate(items), path, blind=blind)
  rows = vqa.tabulate(vqa.score(path, items))
  got = _rows_by_key(rows)
  assert set(rows[0]) == {"benchmark", "group", "metric", "value", "count"}
  assert got[("gqa", "accuracy")]["value"] == pytest.approx(200 / 3)
  assert got[("mme", "accuracy")]["value"] == pytest.approx(100 / 3)
  assert got[("mmmu", "accuracy")] == {"benchmark": "mmmu", "group": "Knowledge", "metric": "accuracy",
                                        "value": 100.0, "count": 3}
  assert got[("group/General", "accuracy")]["value"] == pytest.approx(50.0)
  assert got[("group/General", "accuracy")]["count"] == 6
  assert got[("group/Knowledge", "accuracy")]["value"] == pytest.approx(100.0)
  assert got[("overall", "accuracy")]["value"] == pytest.approx((200 / 3 + 100 / 3 + 100) / 3)  # over benchmarks
  assert got[("gqa", "accuracy_blind")]["value"] == 0.0
  assert got[("mme", "accuracy_blind")]["value"] == 100.0  # every answer is "Yes": the blind bias shows
  assert got[("mmmu", "accuracy_blind")]["value"] == pytest.approx(100 / 3)
  assert got[("overall", "accuracy_blind")]["value"] == pytest.approx((0 + 100 + 100 / 3) / 3)
  assert ("group/OCR & Chart", "accuracy") not in got


def _score(benchmark, group, values, blind=False):
  return [{"benchmark": benchmark, "group": group, "blind": blind, "score": v} for v in values]


def test_tabulate_cvbench_row_and_groupless_benchmarks():
  records = (_score("cvbench_coco", "Vision-Centric", [1, 1]) + _score("cvbench_ade", "Vision-Centric", [0, 1])
             + _score("cvbench_omni3d", "Vision-Centric", [0, 0, 0, 1]) + _score("mle_bench", None, [1, 0]))
  got = _rows_by_key(vqa.tabulate(records))
  assert got[("cvbench", "accuracy")]["value"] == pytest.approx(((100 + 50) / 2 + 25) / 2)
  assert got[("cvbench", "accuracy")]["group"] is None
  assert got[("group/Vision-Centric", "accuracy")]["value"] == pytest.approx((100 + 50 + 25) / 3)
  assert got[("overall", "accuracy")]["value"] == pytest.approx((100 + 50 + 25) / 3)  # MLE-Bench is not in it
  assert got[("mle_bench", "accuracy")]["value"] == 50.0


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
  root = tmp_path_factory.mktemp("vqa_data")
  generate_data(root / "generated", image_size=32, n_captions=1, n_instruct=1, n_eval_per_benchmark=6,
                n_mle_per_level=2, objects="shapes", log=lambda _: None)
  return root


def _oracle(data_root, names):
  """Replies the right answer (as a letter, yes/no word or text) with the image, and "A" without it."""
  truth = {}
  for name in names:
    for item in load_benchmark(name, data_root):
      if item["type"] == "mc":
        truth[item["prompt"]] = "ABCDEFGH"[item["choices"].index(item["answer"])]
      else:
        truth[item["prompt"]] = item["answer"] if isinstance(item["answer"], str) else item["answer"][0]
  calls = []

  def generate(requests, *, blind=False):
    calls.append(len(requests))
    return ["A" if blind else truth[r["prompt"]] for r in requests]

  return generate, calls


def test_evaluate_vqa_end_to_end_with_missing_benchmarks(data_root, tmp_path):
  names = ["gen_general", "gen_knowledge", "gen_ocr_chart", "gen_vision_centric", "gen_mle_bench", "gqa", "textvqa"]
  generate, calls = _oracle(data_root, names[:5])
  logged = []
  result = vqa.evaluate_vqa(names, data_root=data_root, generate=generate, out_dir=tmp_path / "out", batch_size=8,
                            log=logged.append)
  assert result.missing == ["gqa", "textvqa"]
  missing = json.loads((tmp_path / "out" / "missing.json").read_text())
  assert [m["benchmark"] for m in missing] == ["gqa", "textvqa"] and "gqa" in missing[0]["path"]
  assert any("missing benchmarks" in line and "gqa" in line for line in logged)
  got = _rows_by_key(result)
  assert not any(b in ("gqa", "textvqa") for b, _ in got)  # missing is not zero: no row at all
  for name in names[:5]:
    assert got[(name, "accuracy")]["value"] == 100.0 and got[(name, "accuracy")]["count"] == 6
    assert got[(name, "accuracy_blind")]["value"] < 100.0
  assert got[("overall", "accuracy")]["value"] == 100.0 and got[("overall", "accuracy")]["count"] == 24
  assert json.loads((tmp_path / "out" / "results.json").read_text()) == list(result)
  assert sum(calls) == 2 * 30
  again = vqa.evaluate_vqa(names, data_root=data_root, generate=generate, out_dir=tmp_path / "out", log=lambda _: None)
  assert sum(calls) == 2 * 30 and list(again) == list(result)  # a rerun only re-scores


def test_parse_rate_counts_replies_that_gave_a_readable_answer():
  """parse_rate: an option letter or text, a yes/no word, or a non-empty open answer; blind replies apart."""
  records = [{"benchmark": "gen_general", "group": "General", "blind": blind, "score": 0.0, "extracted": extracted}
             for blind, extracted in ((False, 2), (False, None), (False, "no"), (False, ""), (True, None), (True, 0))]
  got = _rows_by_key(vqa.tabulate(records))
  assert got[("gen_general", "parse_rate")]["value"] == 50.0 and got[("gen_general", "parse_rate")]["count"] == 4
  assert got[("group/General", "parse_rate")]["value"] == 50.0
  assert got[("gen_general", "parse_rate_blind")]["value"] == 50.0
  # Records without what was extracted (answer-likelihood scores) get no parse-rate row.
  assert {r["metric"] for r in vqa.tabulate([{k: v for k, v in r.items() if k != "extracted"} for r in records])} == {
      "accuracy", "accuracy_blind"}


def test_evaluate_vqa_limit_and_no_blind(data_root, tmp_path):
  generate, calls = _oracle(data_root, ["gen_knowledge"])
  rows = vqa.evaluate_vqa(["gen_knowledge"], data_root=data_root, generate=generate, out_dir=tmp_path, limit=2,
                          blind_control=False, log=lambda _: None)
  assert sum(calls) == 2 and {r["metric"] for r in rows} == {"accuracy", "parse_rate"}


def test_evaluate_vqa_rejects_unknown_names_before_generating(data_root, tmp_path):
  generate, calls = _oracle(data_root, [])
  with pytest.raises(UnknownNameError, match="gen_general"):
    vqa.evaluate_vqa(["gen_generl"], data_root=data_root, generate=generate, out_dir=tmp_path)
  with pytest.raises(ValueError, match="listed twice"):
    vqa.evaluate_vqa(["gqa", "gqa"], data_root=data_root, generate=generate, out_dir=tmp_path)
  assert not calls and not (tmp_path / "predictions.jsonl").exists()


def test_replies_generator_binds_the_decoder(monkeypatch):
  seen = {}

  def fake_generate_replies(model, template, requests, **settings):
    seen.update(model=model, template=template, settings=settings)
    return [r["prompt"].upper() for r in requests]

  # A stand-in decode module: the real one imports jax and needs a model.
  monkeypatch.setitem(sys.modules, "visual_priors.eval.decode",
                      types.SimpleNamespace(generate_replies=fake_generate_replies))
  generate = vqa.replies_generator("model", "template", image_size=32, max_new_tokens=5, batch_size=2)
  assert generate([{"prompt": "a", "image": None}], blind=True) == ["A"]
  assert seen == {"model": "model", "template": "template",
                  "settings": {"image_size": 32, "max_new_tokens": 5, "batch_size": 2, "blind": True}}
