"""Verified, atomic downloads (file:// URLs and a monkeypatched opener; no network)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from isomax.data import (
    ChecksumError,
    DatasetNotFoundError,
    DownloadError,
    RemoteFile,
    download,
    verify_checksum,
)
from isomax.data import downloads as download_mod
from isomax.data.downloads import default_cache_dir, fetch_file

PAYLOAD = b"isomax test payload " * 1000


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ISOMAX_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "server" / "file.bin"
    src.parent.mkdir()
    src.write_bytes(PAYLOAD)
    return src


def test_cache_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISOMAX_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("ISOMAX_CACHE")
    assert default_cache_dir().parts[-2:] == (".cache", "isomax")


@pytest.mark.parametrize("algo", ["sha256", "md5", "both"])
def test_download_verifies_and_renames(tmp_path: Path, source: Path, algo: str) -> None:
    sha = hashlib.sha256(PAYLOAD).hexdigest() if algo in ("sha256", "both") else None
    md5 = hashlib.md5(PAYLOAD).hexdigest() if algo in ("md5", "both") else None
    dest = tmp_path / "dl" / "file.bin"
    assert download(source.as_uri(), dest, sha, md5=md5) == dest
    assert dest.read_bytes() == PAYLOAD
    assert sorted(p.name for p in dest.parent.iterdir()) == ["file.bin"]
    verify_checksum(dest, sha256=sha, md5=md5)


@pytest.mark.parametrize("which", ["sha256", "md5"])
def test_checksum_mismatch_leaves_nothing(tmp_path: Path, source: Path, which: str) -> None:
    dest = tmp_path / "dl" / "file.bin"
    kwargs = {"sha256": "0" * 64} if which == "sha256" else {"md5": "0" * 32}
    with pytest.raises(ChecksumError, match=which):
        download(source.as_uri(), dest, **kwargs)
    assert list(dest.parent.iterdir()) == []


def test_unreachable_url_leaves_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "dl" / "file.bin"
    missing = (tmp_path / "nope.bin").as_uri()
    with pytest.raises(DownloadError, match="could not download"):
        download(missing, dest, "0" * 64)
    assert list(dest.parent.iterdir()) == []


def test_connection_drop_midway_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Dropping(io.BytesIO):
        def read(self, n: int = -1) -> bytes:
            if self.tell() > 0:
                raise ConnectionResetError("connection reset by peer")
            return super().read(100)

    monkeypatch.setattr(download_mod, "urlopen", lambda url, timeout: Dropping(PAYLOAD))
    dest = tmp_path / "dl" / "file.bin"
    with pytest.raises(DownloadError, match="connection reset"):
        download("https://example.invalid/file.bin", dest, hashlib.sha256(PAYLOAD).hexdigest())
    assert list(dest.parent.iterdir()) == []


def test_unverified_download_warns(
    tmp_path: Path, source: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING"):
        download(source.as_uri(), tmp_path / "f.bin")
    assert "not verified" in caplog.text


def test_verify_checksum_mismatch(source: Path) -> None:
    with pytest.raises(ChecksumError, match="expected md5"):
        verify_checksum(source, md5="1" * 32)


def test_fetch_file_offline_lists_paths_and_url(tmp_path: Path) -> None:
    remote = RemoteFile("data.bin", ("https://example.org/data.bin",), md5="0" * 32)
    dirs = [tmp_path / "a", tmp_path / "b"]
    with pytest.raises(DatasetNotFoundError) as err:
        fetch_file(remote, dirs, tmp_path / "dl", allow_download=False, what="demo")
    msg = str(err.value)
    assert str(tmp_path / "a" / "data.bin") in msg and str(tmp_path / "b" / "data.bin") in msg
    assert "https://example.org/data.bin" in msg and "download=True" in msg


def test_fetch_file_prefers_local_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "data.bin").write_bytes(b"local")

    def no_network(*args, **kwargs):
        raise AssertionError("network used although a local copy exists")

    monkeypatch.setattr(download_mod, "urlopen", no_network)
    remote = RemoteFile("data.bin", ("https://example.org/data.bin",))
    found = fetch_file(remote, [tmp_path / "a", tmp_path / "b"], tmp_path / "dl", True)
    assert found == tmp_path / "b" / "data.bin"


def test_fetch_file_tries_mirrors(tmp_path: Path, source: Path) -> None:
    bad = (tmp_path / "missing.bin").as_uri()
    remote = RemoteFile(
        "file.bin", (bad, source.as_uri()), sha256=hashlib.sha256(PAYLOAD).hexdigest()
    )
    got = fetch_file(remote, [], tmp_path / "dl", True)
    assert got.read_bytes() == PAYLOAD


def test_fetch_file_all_mirrors_fail(tmp_path: Path) -> None:
    remote = RemoteFile("file.bin", ((tmp_path / "x").as_uri(), (tmp_path / "y").as_uri()))
    with pytest.raises(DownloadError, match="fetch it manually"):
        fetch_file(remote, [tmp_path], tmp_path / "dl", True)
    assert not (tmp_path / "dl" / "file.bin").exists()
