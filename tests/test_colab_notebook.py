"""experiments/colab_demo.ipynb: its Colab install cell (in-process, commands recorded) and the whole notebook
executed headless (nbclient + ipykernel) at its tiny size on the test store."""

from __future__ import annotations

import base64
import importlib.util
import os
import pathlib
import re
import subprocess
import sys
import time
import types

import pytest

CHECKOUT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = CHECKOUT / "experiments" / "colab_demo.ipynb"
FORM_FIELD = 'REPO = ""  #@param {type:"string"}'


def _install_cell() -> str:
  nbformat = pytest.importorskip("nbformat")
  return nbformat.read(NOTEBOOK, as_version=4).cells[2].source


def _write_checkout(folder: pathlib.Path) -> pathlib.Path:
  folder.mkdir(parents=True)
  (folder / "pyproject.toml").write_text('[project]\nname = "visual_priors"\n')
  return folder


def test_notebook_is_valid_and_guards_the_colab_install():
  nbformat = pytest.importorskip("nbformat")
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(notebook)
  assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), "commit it unexecuted"
  install = notebook.cells[2].source
  # A Colab form field must be a literal assignment; the install only runs on Colab and when the import fails.
  assert FORM_FIELD in install.splitlines()
  assert 'if importlib.util.find_spec("visual_priors") is None:' in install and "IN_COLAB" in install
  assert '"VISUAL_PRIORS_REPO"' in install and '"pip", "install", "--quiet", "-e"' in install
  assert '"git", "clone", "--depth=1"' in install


@pytest.fixture
def colab(monkeypatch, tmp_path):
  """Runs the install cell in this process as on a Colab runtime lacking visual_priors, in tmp_path/content;
  `subprocess.run` is recorded (a clone writes a checkout) instead of run. Returns execute(repo=...) -> the commands."""
  commands: list[list[str]] = []
  failing: set[str] = set()

  def fake_run(command, **kwargs):
    assert kwargs.get("text") and kwargs.get("stdout") == subprocess.PIPE, "the cell shows a failure's output"
    commands.append([str(part) for part in command])
    if any(word in command for word in failing):
      return subprocess.CompletedProcess(command, 1, stdout="ERROR: no matching distribution\n")
    if command[:2] == ["git", "clone"]:
      _write_checkout(pathlib.Path(command[-1]))
    return subprocess.CompletedProcess(command, 0, stdout="")

  find_spec = importlib.util.find_spec
  monkeypatch.setattr(subprocess, "run", fake_run)
  monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
  monkeypatch.setattr(importlib.util, "find_spec",
                      lambda name, *args: None if name == "visual_priors" else find_spec(name, *args))
  monkeypatch.setattr(sys, "path", list(sys.path))
  monkeypatch.delenv("VISUAL_PRIORS_REPO", raising=False)
  content = tmp_path / "content"
  content.mkdir()
  monkeypatch.chdir(content)

  def execute(repo: str = "") -> list[list[str]]:
    source = _install_cell()
    assert FORM_FIELD in source
    source = source.replace(FORM_FIELD, f'REPO = {repo!r}  #@param {{type:"string"}}')
    exec(compile(source, "install cell", "exec"), {"__name__": "__main__"})  # pylint: disable=exec-used
    return commands

  execute.failing = failing
  execute.commands = commands
  return execute


def _pip(folder: pathlib.Path) -> list[str]:
  return [sys.executable, "-m", "pip", "install", "--quiet", "-e", str(folder)]


def test_colab_install_without_a_repository_says_what_to_fill_in(colab):
  with pytest.raises(RuntimeError) as raised:
    colab()
  message = str(raised.value)
  assert "no repository is given" in message and "REPO form field" in message
  assert 'REPO = "https://github.com/' in message and 'REPO = "/content/drive/MyDrive/visual_priors"' in message
  assert not colab.commands
  assert len(message.splitlines()) < 10


def test_colab_install_clones_a_git_url_from_the_environment_before_the_form_field(colab, monkeypatch):
  url = "https://github.com/someone/visual_priors.git"
  monkeypatch.setenv("VISUAL_PRIORS_REPO", url)
  clone = pathlib.Path.cwd() / "visual_priors"
  assert colab(repo="/not/used") == [["git", "clone", "--depth=1", url, str(clone)], _pip(clone)]
  assert sys.path[0] == str(clone)


def test_colab_install_from_a_folder_in_the_form_field(colab, tmp_path):
  upload = tmp_path / "content" / "upload"
  checkout = _write_checkout(upload / "visual_priors-main")  # an unzipped GitHub download: one folder inside
  assert colab(repo=str(upload)) == [_pip(checkout)]
  assert sys.path[0] == str(checkout)


def test_colab_install_from_the_checkout_around_the_notebook(colab, monkeypatch):
  monkeypatch.chdir(CHECKOUT / "experiments")
  assert colab() == [_pip(CHECKOUT)]


@pytest.mark.parametrize("repo, says", [
    ("/content/drive/MyDrive/visual_priors", "is neither an existing folder (is Drive mounted?) nor a git URL"),
    ("visual priors", "is neither an existing folder nor a git URL"),
    (".", "is a folder but holds no visual_priors checkout"),
])
def test_colab_install_rejects_what_is_not_a_checkout(colab, repo, says):
  with pytest.raises(RuntimeError, match=re.escape(says)) as raised:
    colab(repo=repo)
  assert "REPO form field" in str(raised.value)


def test_colab_install_shows_why_a_command_failed(colab, tmp_path):
  checkout = _write_checkout(tmp_path / "content" / "visual_priors-main")
  colab.failing.add("pip")
  with pytest.raises(RuntimeError, match="failed \\(exit status 1\\):\nERROR: no matching distribution"):
    colab(repo=str(checkout))


def test_colab_install_shows_a_failed_clone_without_its_token(colab, capsys):
  colab.failing.add("clone")
  with pytest.raises(RuntimeError, match="Could not clone REPO = 'https://\\*\\*\\*@github.com/") as raised:
    colab(repo="https://someone:SECRET@github.com/someone/visual_priors.git")
  assert "REPO form field" in str(raised.value)
  assert "SECRET" not in str(raised.value) + capsys.readouterr().out


def test_install_cell_outside_colab_asks_for_pip_install(colab, monkeypatch):
  monkeypatch.delitem(sys.modules, "google.colab")
  with pytest.raises(ModuleNotFoundError, match="pip install -e"):
    colab(repo="https://github.com/someone/visual_priors.git")
  assert not colab.commands


@pytest.mark.slow
def test_notebook_runs_a_tiny_ablation_and_shows_plots(tmp_path, small_store, monkeypatch):
  nbformat = pytest.importorskip("nbformat")
  nbclient = pytest.importorskip("nbclient")
  pytest.importorskip("ipykernel")
  monkeypatch.setenv("VISUAL_PRIORS_NOTEBOOK_SIZE", "tiny")
  monkeypatch.setenv("VISUAL_PRIORS_NOTEBOOK_ROOT", str(tmp_path / "root"))
  monkeypatch.setenv("VISUAL_PRIORS_NOTEBOOK_STORE", str(small_store.root))
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
  # The kernel is a fresh process: one CPU device is enough and compiles faster than the 8 of conftest.
  monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", "").replace(
      "--xla_force_host_platform_device_count=8", "").strip())
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  started = time.perf_counter()
  nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                          resources={"metadata": {"path": str(tmp_path)}}).execute()
  print(f"colab_demo.ipynb at tiny size: {time.perf_counter() - started:.1f} s")

  outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
  text = "".join(output.get("text", "") for output in outputs)
  print(f"{len(text.splitlines())} lines of printed output")
  assert "mix0: done" in text and "mix6: done" in text
  # The runner's progress lines reach the cell (log=print), not only the per-mixture summary.
  assert re.search(r"^\[\d+/\d+\] pretrain \S+: done in [\d.]+ s$", text, re.MULTILINE), text
  assert len(text.splitlines()) < 400, "tiny's progress output should stay short"
  images = [output["data"]["image/png"] for output in outputs if "image/png" in output.get("data", {})]
  assert images, "no inline plot"
  assert all(base64.b64decode(image).startswith(b"\x89PNG") for image in images)
  tables = [output["data"]["text/html"] for output in outputs if "text/html" in output.get("data", {})]
  assert any("Overall" in table for table in tables), "the VQA table is missing"
  plain = [output["data"]["text/plain"] for output in outputs if "text/html" in output.get("data", {})]
  assert len(plain) >= 3 and not any(re.search(r"rows [x×] \d+ columns", table) for table in plain + tables), (
      "a table is truncated")
  assert not any("..." in line.split() for table in plain for line in table.splitlines()), "columns left out"
  assert (tmp_path / "root" / "report.html").is_file()
