"""experiments/launch_xm.py: selection, the three executors' xmanager objects (validated offline), print-only mode,
and real offline `xmanager launch` runs with the local executor."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import shlex
import subprocess
import sys
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "launch_xm.py"


def _load_launcher():
  spec = importlib.util.spec_from_file_location("launch_xm", SCRIPT)
  module = importlib.util.module_from_spec(spec)
  sys.modules["launch_xm"] = module
  spec.loader.exec_module(module)
  return module


launch_xm = sys.modules.get("launch_xm") or _load_launcher()
Options = launch_xm.Options


def test_selection_by_name_sweep_and_demo():
  units = launch_xm.select_work_units(Options(experiments=("demo/mix6", "mix/mix0"), root="/r", until="pretrain",
                                              overrides=("seed=1",), force=True))
  assert [unit.label for unit in units] == ["demo/mix6", "mix/mix0"]
  assert units[0].cli_args == ("run", "demo/mix6", "--root", "/r", "--until", "pretrain", "--force", "--set", "seed=1")
  from visual_priors.experiment import registry
  assert [unit.label for unit in launch_xm.select_work_units(Options(sweep="^demo/"))] == \
      registry.experiment_names("^demo/")
  [demo] = launch_xm.select_work_units(Options(demo=True, reduced=True, root="runs/demo"))
  assert demo.cli_args == ("demo", "--root", "runs/demo", "--reduced")
  # FILE:ARG variants pass through to the run, which resolves them.
  [variant] = launch_xm.select_work_units(Options(experiments=("demo:mixture=mix0,reduced",)))
  assert variant.cli_args[:2] == ("run", "demo:mixture=mix0,reduced")


@pytest.mark.parametrize("options, message", [
    (Options(), "exactly one of"),
    (Options(sweep="^mix/", demo=True), "exactly one of"),
    (Options(experiments=("mix/mx6",)), "Did you mean 'mix/mix6'"),
    (Options(sweep="^nothing-matches/"), "matches no registered experiment"),
    (Options(experiments=("mix/mix6",), until="prtrain"), "Unknown stage 'prtrain'"),
    (Options(demo=True, until="sft"), "apply to runs"),
    (Options(experiments=("mix/mix6",), reduced=True), "only to --demo"),
])
def test_selection_errors(options, message):
  with pytest.raises((ValueError, KeyError), match=message):
    launch_xm.select_work_units(options)


def test_local_plan_runs_this_python():
  from xmanager import xm, xm_local
  units = launch_xm.select_work_units(Options(experiments=("demo/mix6",), root="/tmp/r"))
  plan = launch_xm.build_plan(Options(), units)
  assert isinstance(plan.executor, xm_local.Local) and plan.sequential
  assert isinstance(plan.packageable.executor_spec, xm_local.LocalSpec)
  assert isinstance(plan.packageable.executable_spec, xm.Binary)
  assert plan.commands() == [shlex.join([sys.executable, "-m", "visual_priors", "run", "demo/mix6", "--root", "/tmp/r"])]


def test_tpu_plan_ssh_to_every_worker():
  options = Options(experiments=("mix/mix6",), executor="tpu", tpu="pod", zone="us-east5-a", project="p",
                    tpu_type="v5p-128", root="/mnt/shared/runs", until="sft", print_only=True)
  plan = launch_xm.build_plan(options, launch_xm.select_work_units(options))
  assert plan.sequential
  [command] = plan.commands()
  argv = shlex.split(command)
  assert argv[1:7] == ["compute", "tpus", "tpu-vm", "ssh", "pod", "--zone=us-east5-a"]
  assert "--project=p" in argv and "--worker=all" in argv
  remote = argv[-1].removeprefix("--command=")
  # Each host sources tpu_setup.sh's jax.distributed settings, then runs the experiment from its checkout.
  assert remote == ('. "$HOME"/.visual_priors/jax_env.sh && cd "$HOME"/visual_priors && TF_CPP_MIN_LOG_LEVEL=3 '
                    '"$HOME"/visual_priors_venv/bin/python -m visual_priors run mix/mix6 --root /mnt/shared/runs '
                    '--until sft')
  [describe] = plan.preflight
  assert describe[1:6] == ["compute", "tpus", "tpu-vm", "describe", "pod"]
  # A relative root lives under the remote $HOME; the remote shell must parse the whole command.
  relative = Options(experiments=("mix/mix6",), executor="tpu", tpu="pod", zone="z", root="runs x", print_only=True)
  remote = launch_xm.tpu_remote_command(relative, launch_xm.select_work_units(relative)[0].cli_args)
  assert '--root "$HOME"/\'runs x\'' in remote
  subprocess.run(["bash", "-n", "-c", remote], check=True)


def test_tpu_type_and_preflight_check(tmp_path):
  assert launch_xm.tpu_chips("v5p-128") == 64
  assert launch_xm.tpu_chips("v4-32") == 16
  assert launch_xm.tpu_chips("v6e-64") == 64
  with pytest.raises(ValueError, match="not an accelerator type"):
    launch_xm.tpu_chips("v5p128")
  # The preflight compares `gcloud ... describe` with --tpu_type; a fake gcloud answers as a v5p-8 would.
  fake = tmp_path / "gcloud"
  fake.write_text("#!/usr/bin/env bash\necho V5P-8\n")
  fake.chmod(0o755)
  options = Options(experiments=("mix/mix6",), executor="tpu", tpu="pod", zone="z", tpu_type="v5p-128")
  plan = launch_xm.Plan(None, None, [], [], sequential=True, preflight=[[str(fake), "describe"]])
  with pytest.raises(ValueError, match="is a 'v5p-8', not the --tpu_type='v5p-128'"):
    launch_xm.run_preflight(plan, options)
  launch_xm.run_preflight(plan, Options(tpu="pod", tpu_type="v5p-8"))
  with pytest.raises(ValueError, match="needs --tpu=NAME and --zone"):
    launch_xm.build_plan(Options(executor="tpu", tpu="pod"), [])


@pytest.mark.slow  # importing google.cloud.aiplatform (through xmanager.cloud.vertex) takes 10-25 s here
def test_gpu_plan_is_a_vertex_job_with_a_real_machine_type():
  """Built and validated offline with xmanager's own Vertex machine mapping; nothing is submitted."""
  from xmanager import xm, xm_local
  from xmanager.cloud import vertex
  options = Options(sweep="^demo/", executor="gpu", gpu_type="a100", gpu_count=8, root="/gcs/bucket/runs",
                    image_tag="us-docker.pkg.dev/p/xm/visual_priors")
  units = launch_xm.select_work_units(options)
  plan = launch_xm.build_plan(options, units)
  assert isinstance(plan.executor, xm_local.Vertex) and not plan.sequential
  assert plan.executor.requirements.accelerator == xm.ResourceType.A100
  assert plan.machine_spec["machine_type"] == "a2-highgpu-8g" and plan.machine_spec["accelerator_count"] == 8
  job = xm.Job(executable=plan.packageable, executor=plan.executor, args=plan.unit_args[0])
  assert vertex.get_machine_spec(job) == plan.machine_spec
  spec = plan.packageable.executable_spec
  assert isinstance(spec, xm.PythonContainer) and spec.entrypoint == xm.ModuleName("visual_priors")
  assert pathlib.Path(spec.path) == REPO
  assert any("jax[cuda12]" in line for line in spec.docker_instructions)
  assert plan.packageable.executor_spec.push_image_tag == options.image_tag
  assert plan.commands()[0] == f"python -m visual_priors run {units[0].label} --root /gcs/bucket/runs"
  assert launch_xm.build_plan(Options(executor="gpu", gpu_type="a100", gpu_count=16, root="/gcs/b"), units
                              ).machine_spec["machine_type"] == "a2-megagpu-16g"
  with pytest.raises(ValueError, match="under /gcs/"):
    launch_xm.build_plan(Options(executor="gpu", root="runs"), units)
  with pytest.raises(ValueError, match="does not fit one Vertex AI a100 machine"):
    launch_xm.build_plan(Options(executor="gpu", gpu_count=3, root="/gcs/b"), units)


def _launch_env(tmp_path: pathlib.Path) -> dict[str, str]:
  """xmanager's SQLite database goes to a temporary HOME; the data cache is the test session's (conftest)."""
  env = dict(os.environ)
  env["HOME"] = str(tmp_path / "home")
  env["JAX_PLATFORMS"] = "cpu"
  env.pop("XLA_FLAGS", None)
  return env


def test_print_only_through_xmanager_cli(tmp_path):
  env = _launch_env(tmp_path)
  result = subprocess.run(["xmanager", "launch", str(SCRIPT), "--", "--sweep=^demo/", "--print_only",
                           f"--root={tmp_path / 'runs'}", "--until=pretrain"],
                          env=env, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  commands = [line for line in result.stdout.splitlines() if not line.startswith("#")]
  from visual_priors.experiment import registry
  assert len(commands) == len(registry.experiment_names("^demo/"))
  assert all(shlex.split(line)[1:4] == ["-m", "visual_priors", "run"] for line in commands)
  assert not (tmp_path / "home" / ".xmanager").exists(), "--print_only must not create an experiment"
  bad = subprocess.run(["xmanager", "launch", str(SCRIPT), "--", "--experiment=mix/mx6", "--print_only"],
                       env=env, capture_output=True, text=True, timeout=120)
  assert bad.returncode == 2 and "Did you mean 'mix/mix6'" in bad.stderr


@pytest.mark.slow
def test_local_launch_runs_work_units_offline(tmp_path, small_store):
  """A real `xmanager launch` with the local executor: an untrained-LM pretrain stage runs, a broken unit fails
  and is reported, the launch exits 1, and xmanager recorded the experiment in its SQLite database."""
  env = _launch_env(tmp_path)
  root = tmp_path / "runs"
  started = time.perf_counter()
  result = subprocess.run(
      ["xmanager", "launch", str(SCRIPT), "--", "--experiment=demo:mixture=mix6,reduced",
       "--experiment=demo:mixture=no-such-mixture,reduced", f"--root={root}", "--until=pretrain",
       "--set=pretrain.token_budget=0", f"--set=data.store={small_store.root}", "--title=launch-test"],
      env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path)
  seconds = time.perf_counter() - started
  output = result.stdout + result.stderr
  print(f"local xmanager launch of 2 work units: {seconds:.1f} s")
  assert result.returncode == 1, output[-4000:]
  assert "1 completed, failed: demo:mixture=no-such-mixture,reduced" in output
  [run_dir] = (root / "runs").iterdir()
  assert run_dir.name.startswith("demo-mix6-reduced-")
  [pretrain] = (root / "stages" / "pretrain").iterdir()
  assert (pretrain / "manifest.json").is_file()
  assert (tmp_path / "home" / ".xmanager" / "experiments.sqlite3").is_file()
