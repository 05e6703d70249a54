"""experiments/colab_demo.ipynb executed headless (nbclient + ipykernel) at its tiny size on the test store."""

from __future__ import annotations

import base64
import os
import pathlib
import time

import pytest

NOTEBOOK = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "colab_demo.ipynb"


def test_notebook_is_valid_and_guards_the_colab_install():
  nbformat = pytest.importorskip("nbformat")
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(notebook)
  assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), "commit it unexecuted"
  install = notebook.cells[2].source
  assert 'if importlib.util.find_spec("visual_priors") is None:' in install and "IN_COLAB" in install
  assert "pip" in install and "install" in install


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
  assert "mix0: done" in text and "mix6: done" in text
  images = [output["data"]["image/png"] for output in outputs if "image/png" in output.get("data", {})]
  assert images, "no inline plot"
  assert all(base64.b64decode(image).startswith(b"\x89PNG") for image in images)
  tables = [output["data"]["text/html"] for output in outputs if "text/html" in output.get("data", {})]
  assert any("Overall" in table for table in tables), "the VQA table is missing"
  assert (tmp_path / "root" / "report.html").is_file()
