"""XManager launch script: named experiments as work units, on this machine, a Cloud TPU VM slice, or Vertex AI GPUs.

    xmanager launch experiments/launch_xm.py -- --experiment=demo/mix6 --root=runs
    xmanager launch experiments/launch_xm.py -- --sweep='^mix/' --executor=tpu --tpu=my-pod --zone=us-east5-a \
        --tpu_type=v5p-128 --root=/mnt/shared/visual_priors
    xmanager launch experiments/launch_xm.py -- --sweep='^scale/' --executor=gpu --project=my-project \
        --image_tag=us-docker.pkg.dev/my-project/xm/visual_priors --root=/gcs/my-bucket/visual_priors
    xmanager launch experiments/launch_xm.py -- --demo --root=runs/demo
    python experiments/launch_xm.py --sweep='^demo/' --print_only     # prints the work units, launches nothing

What is selected: `--experiment=NAME` (repeatable; a registered name or FILE:ARG, as `python -m visual_priors
run` takes), `--sweep=REGEX` (every registered name it matches, `visual_priors.experiment.registry.experiment_names`),
or `--demo` (the `python -m visual_priors demo` command as one work unit). Each experiment is one work unit
running `python -m visual_priors run NAME --root ROOT [--until STAGE] [--force] [--set KEY=VALUE ...]`;
finished stages are shared through ROOT, so relaunching a sweep resumes it.

Executors (`--executor`):
  local  `xm_local.Local` + an `xm.binary` of this Python (LocalSpec): no docker, no network; the work
         units run one after another (they share CPU/accelerators and stage locks); xmanager records the
         experiment in its SQLite database (~/.xmanager).
  tpu    a Cloud TPU VM slice prepared by tpu_setup.sh: each work unit is a local `gcloud compute tpus
         tpu-vm ssh NAME --worker=all --command=...` that runs the experiment on every host at once, one
         after another. Each host sources the jax_env.sh that tpu_setup.sh wrote (JAX_COORDINATOR_ADDRESS,
         JAX_NUM_PROCESSES, JAX_PROCESS_ID from the VM metadata); `python -m visual_priors run` calls
         `visual_priors.models.sharding.maybe_initialize_distributed()` before its first mesh, which runs
         `jax.distributed.initialize()` when those variables describe several hosts. ROOT must be a folder
         every host sees (a gcsfuse mount or Filestore) for multi-host runs; `--tpu_type` is checked
         against the slice (`gcloud ... describe`) before anything is launched.
  gpu    Vertex AI custom jobs (`xm_local.Vertex`, `xm.python_container` of this checkout with jax[cuda12],
         `xm.JobRequirements(a100=N)`), all submitted at once. One host per job (a2-highgpu-{1,2,4,8}g or
         a2-megagpu-16g): the installed xmanager maps only A100 (and L4) GPUs to real Vertex machine types,
         and its Vertex TPU support stops at v3, which is why TPUs go through TPU VMs. ROOT must be under
         /gcs/ (Vertex's Cloud Storage FUSE mount) so results outlive the container. Needs docker (or
         --xm_build_image_locally=false for Cloud Build) and gcloud credentials.

`--print_only` prints each work unit's command (and for gpu the Vertex machine spec) without creating an
experiment; `main(argv)` is also callable directly (the tests do).
"""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence

from absl import app
from absl import flags
from xmanager import xm  # defines --xm_launch_script and the other xm_* flags `xmanager launch` passes
from xmanager import xm_local

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
EXECUTORS = ("local", "tpu", "gpu")
GPU_TYPES = ("a100", "l4")
# Vertex AI's A100 machine types hold 1, 2, 4, 8 or 16 GPUs; G2 (L4) machines 1, 2, 4 or 8.
GPU_COUNTS = {"a100": (1, 2, 4, 8, 16), "l4": (1, 2, 4, 8)}
_XM_GPU_RESOURCE = {"a100": "a100", "l4": "l4_24th"}
DEFAULT_GPU_BASE_IMAGE = "python:3.11-slim"
TPU_TYPE_PATTERN = re.compile(r"(v2|v3|v4|v5p|v5litepod|v5e|v6e)-(\d+)")


def _define_flags() -> None:
  """Defines this script's flags once (a second import under another module name reuses them)."""
  if "executor" in flags.FLAGS:
    return
  flags.DEFINE_multi_string("experiment", [], "A registered experiment name or FILE:ARG; repeatable.")
  flags.DEFINE_string("sweep", None, "Launch every registered experiment whose name this regex matches (re.search).")
  flags.DEFINE_bool("demo", False, "Launch `python -m visual_priors demo` as one work unit.")
  flags.DEFINE_bool("reduced", False, "With --demo: the CI-sized demo.")
  flags.DEFINE_enum("executor", "local", EXECUTORS, "Where the work units run.")
  flags.DEFINE_string("root", "runs", "Runs root (stages/, runs/, results/) as the work units see it.")
  flags.DEFINE_string("until", None, "Stop each run after this stage (e.g. pretrain).")
  flags.DEFINE_bool("force", False, "Redo the runs' stages even if done.")
  flags.DEFINE_multi_string("set", [], "Experiment config override KEY=VALUE for every run; repeatable.")
  flags.DEFINE_bool("print_only", False, "Print the work units' commands; launch nothing.")
  flags.DEFINE_string("title", None, "XManager experiment title (default: from the selection).")
  flags.DEFINE_string("tpu", None, "tpu: the TPU VM (slice) name.")
  flags.DEFINE_string("zone", None, "tpu: the TPU VM's zone.")
  flags.DEFINE_string("project", None, "tpu/gpu: the Google Cloud project (default: gcloud's).")
  flags.DEFINE_string("tpu_type", None, "tpu: the expected accelerator type (v5p-128, v4-32, v6e-64, ...).")
  flags.DEFINE_string("tpu_repo_dir", "visual_priors", "tpu: the repository on each host (relative: to $HOME).")
  flags.DEFINE_string("tpu_venv_dir", "visual_priors_venv", "tpu: the virtualenv on each host (relative: to $HOME).")
  flags.DEFINE_string("tpu_state_dir", ".visual_priors", "tpu: tpu_setup.sh's STATE_DIR (relative: to $HOME).")
  flags.DEFINE_enum("gpu_type", "a100", GPU_TYPES, "gpu: the GPU kind.")
  flags.DEFINE_integer("gpu_count", 8, "gpu: GPUs per job (one host).")
  flags.DEFINE_string("image_tag", None, "gpu: registry tag the job image is pushed to (Artifact Registry/GCR).")
  flags.DEFINE_string("base_image", DEFAULT_GPU_BASE_IMAGE, "gpu: the Python base image of the job image.")


_define_flags()


@dataclasses.dataclass(frozen=True)
class Options:
  """Everything a launch needs; `from_flags` reads the command line."""

  experiments: tuple[str, ...] = ()
  sweep: str | None = None
  demo: bool = False
  reduced: bool = False
  executor: str = "local"
  root: str = "runs"
  until: str | None = None
  force: bool = False
  overrides: tuple[str, ...] = ()
  print_only: bool = False
  title: str | None = None
  tpu: str | None = None
  zone: str | None = None
  project: str | None = None
  tpu_type: str | None = None
  tpu_repo_dir: str = "visual_priors"
  tpu_venv_dir: str = "visual_priors_venv"
  tpu_state_dir: str = ".visual_priors"
  gpu_type: str = "a100"
  gpu_count: int = 8
  image_tag: str | None = None
  base_image: str = DEFAULT_GPU_BASE_IMAGE

  @classmethod
  def from_flags(cls, values: flags.FlagValues = flags.FLAGS) -> Options:
    fields = {field.name for field in dataclasses.fields(cls)} - {"experiments", "overrides"}
    return cls(experiments=tuple(values.experiment), overrides=tuple(values.set),
               **{name: values[name].value for name in fields})


@dataclasses.dataclass(frozen=True)
class WorkUnit:
  """One work unit: its label and the arguments after `python -m visual_priors`."""

  label: str
  cli_args: tuple[str, ...]


def select_work_units(options: Options) -> list[WorkUnit]:
  """The work units of the selection; unknown names and empty sweeps fail naming the problem."""
  chosen = [bool(options.experiments), options.sweep is not None, options.demo]
  if sum(chosen) != 1:
    raise ValueError("Give exactly one of --experiment (repeatable), --sweep=REGEX or --demo.")
  if options.demo:
    if options.until or options.force or options.overrides:
      raise ValueError("--until, --force and --set apply to runs, not to --demo.")
    return [WorkUnit("demo", ("demo", "--root", options.root, *(["--reduced"] if options.reduced else [])))]
  if options.reduced:
    raise ValueError("--reduced applies only to --demo.")
  from visual_priors.experiment import registry  # pylint: disable=import-outside-toplevel
  from visual_priors.names import lookup  # pylint: disable=import-outside-toplevel

  if options.sweep is not None:
    names = registry.experiment_names(options.sweep)
    if not names:
      raise ValueError(f"--sweep={options.sweep!r} matches no registered experiment "
                       f"({len(registry.experiment_names())} are registered; `python -m visual_priors list`).")
  else:
    names = list(options.experiments)
    registered = {name: name for name in registry.experiment_names()}
    for name in names:
      if ":" not in name:  # FILE:ARG variants are resolved by the run itself
        lookup(registered, name, "experiment")
  if options.until is not None:
    from visual_priors import experiment  # pylint: disable=import-outside-toplevel
    lookup({stage: stage for stage in experiment.STAGES}, options.until, "stage")
  extra = [*(["--until", options.until] if options.until else []), *(["--force"] if options.force else [])]
  for override in options.overrides:
    extra += ["--set", override]
  return [WorkUnit(name, ("run", name, "--root", options.root, *extra)) for name in names]


def _home_path(path: str) -> str:
  """A path for a remote shell: absolute paths quoted as given, relative ones under the remote $HOME."""
  return shlex.quote(path) if path.startswith("/") else '"$HOME"/' + shlex.quote(path)


def tpu_remote_command(options: Options, cli_args: Sequence[str]) -> str:
  """The shell command every TPU VM host runs for one work unit."""
  python = _home_path(f"{options.tpu_venv_dir.rstrip('/')}/bin/python")
  root_args = list(cli_args)
  if "--root" in root_args:  # the root is relative to the remote home, not to the repository
    index = root_args.index("--root") + 1
    quoted = [shlex.quote(arg) for arg in root_args]
    quoted[index] = _home_path(root_args[index])
  else:
    quoted = [shlex.quote(arg) for arg in root_args]
  return (f". {_home_path(options.tpu_state_dir.rstrip('/') + '/jax_env.sh')} && cd {_home_path(options.tpu_repo_dir)}"
          f" && TF_CPP_MIN_LOG_LEVEL=3 {python} -m visual_priors {' '.join(quoted)}")


def _gcloud_location(options: Options) -> list[str]:
  return [f"--zone={options.zone}", *([f"--project={options.project}"] if options.project else [])]


def tpu_chips(tpu_type: str) -> int:
  """Chips of an accelerator type: v2/v3/v4/v5p names count TensorCores (2 per chip), v5e/v6e names chips."""
  match = TPU_TYPE_PATTERN.fullmatch(tpu_type)
  if not match:
    raise ValueError(f"--tpu_type={tpu_type!r} is not an accelerator type like v5p-128, v4-32, v5litepod-16 or "
                     "v6e-64.")
  family, count = match.group(1), int(match.group(2))
  return count // 2 if family in ("v2", "v3", "v4", "v5p") else count


@dataclasses.dataclass
class Plan:
  """How the work units run: the packageable, the executor, per-unit job args, checks to run before launching."""

  packageable: object  # xm.Packageable
  executor: object  # xm.Executor
  unit_args: list[list[str]]
  labels: list[str]
  sequential: bool
  preflight: list[list[str]] = dataclasses.field(default_factory=list)
  machine_spec: dict | None = None

  def commands(self) -> list[str]:
    """Each work unit as the command line it runs (gpu: the container entrypoint's arguments)."""
    spec = self.packageable.executable_spec
    head = [spec.path] if isinstance(spec, xm.Binary) else ["python", "-m", spec.entrypoint.module_name]
    base = list(self.packageable.args.to_list()) if self.packageable.args is not None else []
    return [shlex.join(head + base + args) for args in self.unit_args]


def build_plan(options: Options, units: Sequence[WorkUnit]) -> Plan:
  """The xmanager objects for the executor; every check that needs no network runs here."""

  labels = [unit.label for unit in units]
  if options.executor == "local":
    packageable = xm.binary(executor_spec=xm_local.LocalSpec(), path=sys.executable, args=["-m", "visual_priors"],
                            env_vars={"TF_CPP_MIN_LOG_LEVEL": "3"})
    return Plan(packageable, xm_local.Local(), [list(unit.cli_args) for unit in units], labels, sequential=True)

  if options.executor == "tpu":
    if not options.tpu or not options.zone:
      raise ValueError("--executor=tpu needs --tpu=NAME and --zone=ZONE (a TPU VM slice prepared by tpu_setup.sh).")
    gcloud = shutil.which("gcloud")
    if gcloud is None and not options.print_only:
      raise FileNotFoundError("--executor=tpu runs `gcloud compute tpus tpu-vm ssh`; gcloud is not on PATH.")
    ssh = ["compute", "tpus", "tpu-vm", "ssh", options.tpu, *_gcloud_location(options), "--worker=all"]
    preflight = []
    if options.tpu_type:
      tpu_chips(options.tpu_type)  # validates the name before anything runs
      preflight.append([gcloud or "gcloud", "compute", "tpus", "tpu-vm", "describe", options.tpu,
                        *_gcloud_location(options), "--format=value(acceleratorType)"])
    packageable = xm.binary(executor_spec=xm_local.LocalSpec(), path=gcloud or "gcloud", args=ssh)
    unit_args = [[f"--command={tpu_remote_command(options, unit.cli_args)}"] for unit in units]
    return Plan(packageable, xm_local.Local(), unit_args, labels, sequential=True, preflight=preflight)

  if options.executor == "gpu":
    if options.gpu_count not in GPU_COUNTS[options.gpu_type]:
      raise ValueError(f"--gpu_count={options.gpu_count} does not fit one Vertex AI {options.gpu_type} machine; "
                       f"use one of {GPU_COUNTS[options.gpu_type]}.")
    if not options.root.startswith("/gcs/"):
      raise ValueError(f"--executor=gpu needs --root under /gcs/BUCKET/ (Vertex AI's Cloud Storage mount), got "
                       f"{options.root!r}: anything else is lost with the container.")
    from xmanager.cloud import vertex  # pylint: disable=import-outside-toplevel

    repo = REPO_ROOT.name
    packageable = xm.python_container(
        executor_spec=xm_local.Vertex.Spec(push_image_tag=options.image_tag),
        path=str(REPO_ROOT),
        base_image=options.base_image,
        entrypoint=xm.ModuleName("visual_priors"),
        docker_instructions=[
            "ENV LANG=C.UTF-8 TF_CPP_MIN_LOG_LEVEL=3",
            'RUN python -m pip install --no-cache-dir --upgrade "pip>=25"',
            f"COPY {repo}/ /workdir/visual_priors",
            "WORKDIR /workdir/visual_priors",
            'RUN python -m pip install --no-cache-dir -e . "jax[cuda12]"',
        ],
    )
    requirements = xm.JobRequirements(**{_XM_GPU_RESOURCE[options.gpu_type]: options.gpu_count})
    executor = xm_local.Vertex(requirements=requirements)
    # The machine type xmanager will ask Vertex for, computed offline by xmanager itself.
    machine_spec = vertex.get_machine_spec(xm.Job(executable=packageable, executor=executor))
    if not str(machine_spec.get("machine_type", "")).startswith(("a2-", "g2-")):
      raise ValueError(f"xmanager maps {options.gpu_count}x {options.gpu_type} to {machine_spec}, which is not a GPU "
                       "machine type Vertex AI accepts.")
    return Plan(packageable, executor, [list(unit.cli_args) for unit in units], labels, sequential=False,
                machine_spec=machine_spec)
  raise ValueError(f"Unknown --executor={options.executor!r}; choose one of {EXECUTORS}.")


def run_preflight(plan: Plan, options: Options) -> None:
  """The checks that need the network (tpu: the slice's accelerator type matches --tpu_type)."""
  for command in plan.preflight:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
      raise RuntimeError(f"`{shlex.join(command)}` failed: {result.stderr.strip()}")
    found = result.stdout.strip().lower()
    if found != (options.tpu_type or "").lower():
      raise ValueError(f"TPU {options.tpu!r} is a {found!r}, not the --tpu_type={options.tpu_type!r} asked for.")


async def _launch(plan: Plan, title: str, outcome: dict) -> None:

  async with xm_local.create_experiment(experiment_title=title) as experiment:
    outcome["experiment_id"] = experiment.experiment_id
    [executable] = experiment.package([plan.packageable])
    for label, args in zip(plan.labels, plan.unit_args):
      job_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", label)  # prefixes the unit's output lines
      work_unit = await experiment.add(xm.Job(executable, executor=plan.executor, name=job_name, args=args))
      print(f"[launch_xm] work unit {work_unit.work_unit_id}: {label}", flush=True)
      if plan.sequential:
        try:
          await work_unit.wait_until_complete()
        except xm.ExperimentUnitError as error:
          print(f"[launch_xm] work unit {work_unit.work_unit_id} ({label}) failed: {error}", flush=True)
          outcome["failed"].append(label)
          continue
        outcome["completed"].append(label)


def launch(plan: Plan, title: str) -> int:
  """Creates the XManager experiment and its work units; returns the exit status (1 if any unit failed)."""
  outcome: dict = {"experiment_id": None, "failed": [], "completed": []}
  try:
    asyncio.run(_launch(plan, title, outcome))
  except RuntimeError:
    # Leaving the experiment, xm_local re-raises the failure of a local job this loop already reported.
    if not outcome["failed"]:
      raise
  summary = (f"{len(outcome['completed'])} completed" if plan.sequential else "submitted")
  failed = f", failed: {', '.join(outcome['failed'])}" if outcome["failed"] else ""
  print(f"[launch_xm] experiment {outcome['experiment_id']}: {len(plan.labels)} work unit(s), {summary}{failed}",
        flush=True)
  return 1 if outcome["failed"] else 0


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected positional arguments: {' '.join(argv[1:])}")
  options = Options.from_flags()
  if options.executor == "local":
    options = dataclasses.replace(options, root=str(pathlib.Path(options.root).absolute()))
  try:
    units = select_work_units(options)
    plan = build_plan(options, units)
    if not options.print_only:
      run_preflight(plan, options)
  except (ValueError, KeyError, FileNotFoundError, RuntimeError) as error:
    # Bad input is one clear line, as `python -m visual_priors` reports it.
    print(f"error: {error}", file=sys.stderr)
    return 2
  title = options.title or ("demo" if options.demo else options.sweep or ",".join(options.experiments))
  if options.print_only:
    for command in plan.preflight:
      print(f"# preflight: {shlex.join(command)}")
    if plan.machine_spec is not None:
      print(f"# vertex machine: {plan.machine_spec}")
    for label, command in zip(plan.labels, plan.commands()):
      print(f"# {label}\n{command}")
    return 0
  return launch(plan, title)


if __name__ == "__main__":
  app.run(main)
