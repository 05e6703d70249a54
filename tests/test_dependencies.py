"""Every third-party module the code imports comes from a distribution that pyproject.toml declares.

The check reads the imports of every file (module-level and function-level alike) with `ast`, maps each
top-level module to the installed distributions that provide it (`importlib.metadata`), and walks the
declared requirements (with their extras and environment markers) to their closure. Whatever else is
installed on the machine does not count, so an undeclared import fails here even where it happens to work.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import pathlib
import re
import sys
import tomllib

from packaging.requirements import Requirement

REPO = pathlib.Path(__file__).resolve().parents[1]
# (folders whose code must run on a plain install, folders that may also use the `test` extra)
INSTALL_CODE = ("visual_priors", "experiments", "benchmarks")
TEST_CODE = ("tests",)
# Package files that may also import an optional extra's distributions (lazily, failing with an install hint).
EXTRA_CODE = {"lm-eval": ("visual_priors/interop/lm_harness.py",)}


def _normal(name: str) -> str:
  return re.sub(r"[-_.]+", "-", name).lower()


def imported_modules(files, root: pathlib.Path = REPO) -> dict[str, set[str]]:
  """Top-level module name -> the files (relative to `root`) that import it; relative imports are skipped."""
  found: dict[str, set[str]] = {}
  for path in files:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
      if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
      elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        names = [node.module]
      else:
        continue
      for name in names:
        found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(root)))
  return found


def local_modules() -> set[str]:
  """Names that resolve inside the repository: its packages and the loose modules of each code folder."""
  names = {path.parent.name for path in REPO.glob("*/__init__.py")} | set(INSTALL_CODE) | set(TEST_CODE)
  for folder in INSTALL_CODE + TEST_CODE:
    names |= {path.stem for path in (REPO / folder).rglob("*.py")}
  return names


def declared(extras: tuple[str, ...] = ()) -> list[Requirement]:
  project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
  requirements = [Requirement(text) for text in project["dependencies"]]
  for extra in extras:
    requirements += [Requirement(text) for text in project["optional-dependencies"][extra]]
  return requirements


def closure(requirements: list[Requirement]) -> set[str]:
  """Normalised names of the declared distributions and everything they require (markers evaluated)."""
  seen: set[tuple[str, str]] = set()  # (distribution, extra or "")
  pending = [(requirement, "") for requirement in requirements]
  while pending:
    requirement, extra = pending.pop()
    if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
      continue
    name = _normal(requirement.name)
    new = [e for e in ("", *requirement.extras) if (name, e) not in seen]
    seen.update((name, e) for e in new)
    try:
      below = metadata.requires(requirement.name) or [] if new else []
    except metadata.PackageNotFoundError:
      continue  # declared but not installed: the install itself fails on that, not this check
    pending += [(Requirement(text), e) for text in below for e in new]
  return {name for name, _ in seen}


def undeclared(modules: dict[str, set[str]], allowed: set[str]) -> list[str]:
  """One line per imported module that no declared distribution provides."""
  providers = metadata.packages_distributions()
  problems = []
  for module, files in sorted(modules.items()):
    if module in sys.stdlib_module_names or module in local_modules() or module == "__future__":
      continue
    dists = {_normal(d) for d in providers.get(module, [])}
    if not dists:
      problems.append(f"{module} (imported by {', '.join(sorted(files))}) is provided by no installed distribution")
    elif not dists & allowed:
      problems.append(f"{module} (imported by {', '.join(sorted(files))}) comes from {', '.join(sorted(dists))}, "
                      "which pyproject.toml does not declare")
  return problems


def _python_files(folders) -> list[pathlib.Path]:
  return sorted(path for folder in folders for path in (REPO / folder).rglob("*.py"))


def test_package_experiments_and_benchmarks_import_only_declared_dependencies():
  extra_files = {REPO / name for names in EXTRA_CODE.values() for name in names}
  plain = [path for path in _python_files(INSTALL_CODE) if path not in extra_files]
  problems = undeclared(imported_modules(plain), closure(declared()))
  for extra, names in EXTRA_CODE.items():
    problems += undeclared(imported_modules([REPO / name for name in names]), closure(declared((extra,))))
  assert not problems, "Undeclared imports:\n" + "\n".join(problems)


def test_tests_import_only_declared_dependencies_or_the_test_extra():
  problems = undeclared(imported_modules(_python_files(TEST_CODE)), closure(declared(("test",))))
  assert not problems, "Undeclared imports:\n" + "\n".join(problems)


def test_an_import_from_the_test_extra_in_package_code_is_reported(tmp_path):
  """The check can fail: package code importing pytest (declared only in the `test` extra) is caught."""
  (tmp_path / "visual_priors").mkdir()
  probe = tmp_path / "visual_priors" / "probe.py"
  probe.write_text("import json\nfrom visual_priors import cli\n\n\ndef f():\n  import pytest\n")
  problems = undeclared(imported_modules([probe], root=tmp_path), closure(declared()))
  assert problems == ["pytest (imported by visual_priors/probe.py) comes from pytest, which pyproject.toml does "
                      "not declare"]


def test_declared_dependencies_are_all_used():
  """No direct dependency sits unused: each provides a module some code imports (or is a known plugin)."""
  used = set(imported_modules(_python_files(INSTALL_CODE)))
  providers = metadata.packages_distributions()
  provided_by: dict[str, set[str]] = {}
  for module, dists in providers.items():
    for dist in dists:
      provided_by.setdefault(_normal(dist), set()).add(module)
  # Needed without an import of their own: seqio's tokenizer ops, the `xmanager` console script.
  runtime_only = {"tensorflow-text", "xmanager"}
  unused = [requirement.name for requirement in declared()
            if _normal(requirement.name) not in runtime_only
            and not provided_by.get(_normal(requirement.name), set()) & used]
  assert not unused, f"Declared but never imported: {unused}"
