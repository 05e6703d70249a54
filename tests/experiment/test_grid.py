"""The grid: runs named experiments in turn, goes on past a failed one, tabulates them; the run/grid CLI."""

from __future__ import annotations

import pytest

from fake_stages import replace_every_run
from visual_priors import cli, experiment
from visual_priors.experiment import grid, registry


def _experiment(name: str, overrides=()):
  config = experiment.apply_local(experiment.base_config())
  config.name = name
  config.data.mixture = {"t/a": "mix0", "t/b": "code=1", "t/c": "mix6"}[name]
  return experiment.finalize(experiment.apply_overrides(config, overrides))


@pytest.fixture
def fake(monkeypatch):
  """Fake registry of three experiments; executors that record calls and fail pretrain for mixture code=1."""
  calls: list[tuple[str, str]] = []

  def make(stage):
    def execute(ctx):
      calls.append((ctx.config.name, stage))
      if stage == "pretrain" and ctx.config.data.mixture == "code=1":
        raise ValueError("no code corpus in this store")
      return {"run": str(ctx.out_dir)}
    return execute

  replace_every_run(make, monkeypatch)
  monkeypatch.setattr(registry, "get_experiment", _experiment)
  monkeypatch.setattr(registry, "experiment_names", lambda pattern=None: [
      n for n in ("t/a", "t/b", "t/c") if not pattern or pattern in n])
  return calls


def test_the_grid_goes_on_past_a_failed_run_and_tabulates_every_run(tmp_path, fake):
  lines: list[str] = []
  rows = grid.grid(["t/a", "t/b", "t/c"], root=tmp_path, until="vision", log=lines.append)
  assert [(row.name, row.status) for row in rows] == [("t/a", "partial"), ("t/b", "failed"), ("t/c", "partial")]
  assert rows[1].error == "ValueError: no code corpus in this store" and rows[1].run_id is None
  assert rows[0].run_id.startswith("t-a-")
  # t/c shares t/a's generated data and vision tower: only its pretrain runs.
  assert [stage for name, stage in fake if name == "t/c"] == ["pretrain"]
  table = lines[-1]
  assert "| t/b | failed |" in table and "no code corpus" in table and "2 of 3 runs finished, 1 failed" in table


def test_the_grid_can_stop_at_the_first_failure(tmp_path, fake):
  with pytest.raises(ValueError, match="no code corpus"):
    grid.grid(["t/b", "t/c"], root=tmp_path, continue_on_error=False, log=lambda _: None)
  assert all(name == "t/b" for name, _ in fake)
  with pytest.raises(ValueError, match="grid is empty"):
    grid.grid([], root=tmp_path)


def test_cli_grid_and_run(tmp_path, fake, capsys):
  assert cli.main(["grid", "--filter", "t/", "--root", str(tmp_path), "--until", "mmdata"]) == 1
  assert "| t/b | failed |" in capsys.readouterr().out
  assert cli.main(["run", "t/a", "--root", str(tmp_path), "--until", "vision", "--set", "seed=7"]) == 0
  out = capsys.readouterr().out
  assert '"status": "partial"' in out and '"vision": "done"' in out  # seed 7: new stage keys
  assert cli.main(["run", "t/a", "--root", str(tmp_path), "--until", "vision", "--force-from", "vision",
                   "--set", "seed=7"]) == 0
  assert '"mmdata": "cached"' in capsys.readouterr().out
  assert cli.main(["run", "t/b", "--root", str(tmp_path)]) == 2
  assert "error: no code corpus" in capsys.readouterr().err


def test_the_seed_axis_runs_every_experiment_per_seed_seed_by_seed(tmp_path, fake, capsys):
  rows = grid.grid(["t/a", "t/c"], root=tmp_path, seeds=(0, 1), until="vision", log=lambda _: None)
  assert [row.name for row in rows] == ["t/a seed=0", "t/c seed=0", "t/a seed=1", "t/c seed=1"]
  assert len({row.run_id for row in rows}) == 4  # the seed enters the stage keys: four runs, four ids
  assert ("t/a", "vision") in fake and sum(stage == "vision" for _, stage in fake) == 2  # one tower per seed
  with pytest.raises(ValueError, match="distinct non-negative integers"):
    grid.grid(["t/a"], root=tmp_path, seeds=(1, 1))
  before = len(fake)
  with pytest.raises(ValueError, match="seed"):  # a bad override fails before any run starts
    grid.grid(["t/a", "t/c"], root=tmp_path, overrides=["seed=-3"])
  assert len(fake) == before
  assert cli.main(["grid", "--filter", "t/a", "--root", str(tmp_path), "--until", "mmdata", "--seeds", "3,4"]) == 0
  assert "| t/a seed=4 |" in capsys.readouterr().out
  with pytest.raises(SystemExit):
    cli.main(["grid", "--seeds", "zero"])
