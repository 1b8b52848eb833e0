"""Safe, atomic archive extraction: hostile members are refused and nothing leaks out."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from isomax.data import (
    UnsafeArchiveError,
    extract_to_cache,
    get_dataset,
    is_archive,
    safe_extract,
)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ISOMAX_CACHE", str(tmp_path_factory.mktemp("cache")))


def _snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _add(tar: tarfile.TarFile, name: str, data: bytes | None = None, **attrs: object) -> None:
    info = tarfile.TarInfo(name)
    for key, value in attrs.items():
        setattr(info, key, value)
    if data is not None:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        tar.addfile(info)


def _make_tar(path: Path, build, mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tar:
        build(tar)
    return path


def _assert_refused(archive: Path, target: Path, member: str, before: set[str]) -> None:
    root = archive.parent
    with pytest.raises(UnsafeArchiveError) as err:
        safe_extract(archive, target)
    assert member in str(err.value)
    assert not target.exists()
    after = _snapshot(root)
    assert after == before, f"files appeared: {after - before}"


HOSTILE_TARS = {
    "dotdot": ("../evil.txt", lambda t, outside: _add(t, "../evil.txt", b"x")),
    "nested-dotdot": ("a/../../evil.txt", lambda t, outside: _add(t, "a/../../evil.txt", b"x")),
    "absolute": (
        "abs.txt",
        lambda t, outside: _add(t, str(outside / "abs.txt"), b"x"),
    ),
    "symlink-abs": (
        "passwd",
        lambda t, outside: _add(t, "passwd", type=tarfile.SYMTYPE, linkname="/etc/passwd"),
    ),
    "symlink-rel": (
        "up",
        lambda t, outside: _add(t, "up", type=tarfile.SYMTYPE, linkname="../../outside"),
    ),
    "hardlink": (
        "hl",
        lambda t, outside: _add(t, "hl", type=tarfile.LNKTYPE, linkname="../outside/secret"),
    ),
    "hardlink-abs": (
        "hl2",
        lambda t, outside: _add(t, "hl2", type=tarfile.LNKTYPE, linkname="/etc/passwd"),
    ),
    "chardev": (
        "dev/null2",
        lambda t, outside: _add(t, "dev/null2", type=tarfile.CHRTYPE, devmajor=1, devminor=3),
    ),
    "fifo": ("pipe", lambda t, outside: _add(t, "pipe", type=tarfile.FIFOTYPE)),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_TARS))
def test_hostile_tar_is_refused_and_nothing_is_written(tmp_path: Path, case: str) -> None:
    member, build = HOSTILE_TARS[case]
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")

    def content(tar: tarfile.TarFile) -> None:
        _add(tar, "good/first.txt", b"fine")  # a valid member before the bad one
        build(tar, outside)

    archive = _make_tar(tmp_path / "bad.tar.gz", content, "w:gz")
    target = tmp_path / "work" / "out"
    target.parent.mkdir()
    _assert_refused(archive, target, member, _snapshot(tmp_path))


def test_symlink_then_write_through_is_refused(tmp_path: Path) -> None:
    (tmp_path / "outside").mkdir()

    def content(tar: tarfile.TarFile) -> None:
        _add(tar, "inner", type=tarfile.SYMTYPE, linkname=".")  # harmless alone
        _add(tar, "inner/../escape.txt", b"x")  # '..' refused by name

    archive = _make_tar(tmp_path / "chain.tar", content)
    target = tmp_path / "out"
    _assert_refused(archive, target, "inner/../escape.txt", _snapshot(tmp_path))


def test_links_inside_the_target_are_allowed(tmp_path: Path) -> None:
    def content(tar: tarfile.TarFile) -> None:
        _add(tar, "sub/", type=tarfile.DIRTYPE)
        _add(tar, "sub/a.txt", b"a")
        _add(tar, "alias", type=tarfile.SYMTYPE, linkname="sub")
        _add(tar, "alias/b.txt", b"b")  # written through an inside link: stays inside
        _add(tar, "hard.txt", type=tarfile.LNKTYPE, linkname="sub/a.txt")

    archive = _make_tar(tmp_path / "ok.tar", content)
    out = safe_extract(archive, tmp_path / "out")
    assert (out / "sub" / "b.txt").read_bytes() == b"b"
    assert (out / "hard.txt").read_bytes() == b"a"
    assert (out / "alias").is_symlink()


def _zip(path: Path, entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return path


def _zip_symlink(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.external_attr = (0o120777 << 16) | 0
    info.create_system = 3
    return info, target.encode()


@pytest.mark.parametrize(
    ("member", "entry"),
    [
        ("../evil.txt", ("../evil.txt", b"x")),
        ("/abs.txt", ("/abs.txt", b"x")),
        ("a/../../evil.txt", ("a/../../evil.txt", b"x")),
        ("link", _zip_symlink("link", "/etc/passwd")),
    ],
)
def test_hostile_zip_is_refused(tmp_path: Path, member: str, entry) -> None:
    archive = _zip(tmp_path / "bad.zip", [("ok/first.txt", b"fine"), entry])
    target = tmp_path / "out"
    _assert_refused(archive, target, member, _snapshot(tmp_path))


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip"])
def test_good_archives_extract(tmp_path: Path, suffix: str) -> None:
    files = {"data/train/cat/0.txt": b"c0", "data/train/dog/1.txt": b"d1", "README": b"r"}
    archive = tmp_path / f"good{suffix}"
    assert is_archive(archive)
    if suffix == ".zip":
        _zip(archive, list(files.items()))
    else:
        mode = {".tar": "w", ".tar.gz": "w:gz", ".tgz": "w:gz", ".tar.bz2": "w:bz2"}
        mode[".tar.xz"] = "w:xz"

        def content(tar: tarfile.TarFile) -> None:
            for name, data in files.items():
                _add(tar, name, data)

        _make_tar(archive, content, mode[suffix])
    out = safe_extract(archive, tmp_path / "out")
    for name, data in files.items():
        assert (out / name).read_bytes() == data
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")]
    assert leftovers == []


def test_existing_target_means_done(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _make_tar(tmp_path / "a.tar", lambda t: _add(t, "x.txt", b"1"))
    out = safe_extract(archive, tmp_path / "out")

    def boom(*args, **kwargs):
        raise AssertionError("archive reopened although it was already extracted")

    monkeypatch.setattr(tarfile, "open", boom)
    assert safe_extract(archive, tmp_path / "out") == out


def test_crash_midway_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def content(tar: tarfile.TarFile) -> None:
        for i in range(5):
            _add(tar, f"d/{i}.txt", b"x")

    archive = _make_tar(tmp_path / "a.tar", content)
    real_extract = tarfile.TarFile.extract
    calls = {"n": 0}

    def flaky(self, member, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real_extract(self, member, *args, **kwargs)

    monkeypatch.setattr(tarfile.TarFile, "extract", flaky)
    before = _snapshot(tmp_path)
    with pytest.raises(OSError, match="disk full"):
        safe_extract(archive, tmp_path / "out")
    assert _snapshot(tmp_path) == before


def test_not_an_archive(tmp_path: Path) -> None:
    bogus = tmp_path / "x.tar"
    bogus.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(ValueError, match="not a tar or zip"):
        safe_extract(bogus, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_extract_to_cache_is_keyed_by_archive(tmp_path: Path) -> None:
    archive = _make_tar(tmp_path / "a.tar", lambda t: _add(t, "x.txt", b"1"))
    cache = tmp_path / "cache"
    first = extract_to_cache(archive, cache)
    assert first.parent == cache / "extracted" and first.name.startswith("a-")
    assert extract_to_cache(archive, cache) == first
    _make_tar(archive, lambda t: _add(t, "x.txt", b"22"))
    os.utime(archive, ns=(1, 1))  # a replaced archive gets a fresh extraction
    second = extract_to_cache(archive, cache)
    assert second != first and (second / "x.txt").read_bytes() == b"22"


# -------------------------------------------------------------------------------- corrupt archives (listed in docs/errors.md)


ARCHIVE_CASES = [
    ("garbage_tgz", ValueError, r"garbage.tar.gz is not a tar or zip archive \(supported:"),
    ("truncated_tgz", ValueError, r"cut.tar.gz .*(corrupt|truncated|not a valid)"),
    ("truncated_zip", ValueError, r"cut.zip .*(corrupt|truncated|not a valid)"),
    ("not_an_archive", ValueError, r"text.tar is not a tar or zip archive \(supported: .tar"),
]


@pytest.mark.parametrize(
    ("name", "exc", "pattern"), ARCHIVE_CASES, ids=[c[0] for c in ARCHIVE_CASES]
)
def test_safe_extract_bad_archive(archives, tmp_path, name, exc, pattern):
    target = tmp_path / "out"
    with pytest.raises(exc, match=pattern):
        safe_extract(archives[name], target)
    assert not target.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.partial-")]


def test_safe_extract_missing_archive(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"archive .*missing.zip does not exist"):
        safe_extract(tmp_path / "missing.zip", tmp_path / "out")


def test_get_dataset_from_truncated_archive(archives, tmp_path):
    with pytest.raises(ValueError, match=r"cut.zip .*(corrupt|truncated|not a valid)"):
        get_dataset(str(archives["truncated_zip"]), root=tmp_path / "cache")
