"""A damaged upstream checkpoint: one line naming the stage and step, exit 2, and the next run rebuilds it."""

import pathlib

import pytest
from flax import nnx

from fake_stages import replace_runs
from visual_priors import cli
from visual_priors.data import cache
from visual_priors.models.decoder import Decoder, DecoderConfig
from visual_priors.train import upstream


@pytest.fixture
def lm_readers(monkeypatch):
  """The real pretrain stage; mmdata and vision write nothing; align only restores the LM as the real one does."""

  def nothing(ctx):
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    return {"run": str(ctx.out_dir)}

  def align(ctx):
    run = upstream.read_run(ctx.outputs["pretrain"]["run"], "lm", ("pretrain",))
    config = DecoderConfig(**run.manifest["model"])
    upstream.restore_module(run, lambda: Decoder(config, rngs=nnx.Rngs(0)))
    return nothing(ctx)

  replace_runs({"mmdata": nothing, "vision": nothing, "align": align}, monkeypatch)


def _run(root, store):
  return cli.main(["run", "demo:mixture=mix6,reduced,untrained=True", "--root", str(root),
                   "--set", f"data.store={store.root}", "--until", "align"])


def _stage_status(root: pathlib.Path) -> dict:
  newest = max((root / "runs").iterdir(), key=lambda p: p.stat().st_mtime_ns)
  return {stage: record["status"] for stage, record in cache.read_json(newest / "run.json")["stages"].items()}


def test_a_damaged_upstream_is_one_line_exit_2_and_the_next_run_rebuilds_it(tmp_path, small_store, lm_readers,
                                                                            capsys):
  assert _run(tmp_path, small_store) == 0
  stage_dir = next((tmp_path / "stages" / "pretrain").iterdir())
  step_dir = stage_dir / "out" / "checkpoints" / "0"
  for path in (step_dir / "state").rglob("*"):
    if path.is_file() and path.parent.name == "d":
      path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
  next(iter((tmp_path / "stages" / "align").iterdir())).joinpath("manifest.json").unlink()
  capsys.readouterr()

  assert _run(tmp_path, small_store) == 2
  error = capsys.readouterr().err.strip()
  assert error.startswith("error: ") and "\n" not in error, error
  assert "pretrain" in error and "step 0" in error and "damaged" in error
  assert not (stage_dir / "manifest.json").exists()  # the pretrain stage is no longer done

  assert _run(tmp_path, small_store) == 0, capsys.readouterr().err
  assert _stage_status(tmp_path)["pretrain"] == "done"  # rebuilt, not cached
  assert _stage_status(tmp_path)["align"] == "done"
