"""Archives whose links move after they were checked, and decompression bombs (issue 16)."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from isomax.data import UnsafeArchiveError, safe_extract


def _add(tar: tarfile.TarFile, name: str, data: bytes | None = None, **attrs: object) -> None:
    info = tarfile.TarInfo(name)
    for key, value in attrs.items():
        setattr(info, key, value)
    if data is not None:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        tar.addfile(info)


def _link(tar: tarfile.TarFile, name: str, target: str) -> None:
    _add(tar, name, type=tarfile.SYMTYPE, linkname=target)


def _outside(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(b"not yours")
    return outside


def _moving_link_tar(tmp_path: Path, outside: Path, depth: int = 60) -> Path:
    """The attack of issue 16: ``d`` deep, ``e`` through ``d`` and up, then ``d -> .``."""
    archive = tmp_path / "evil.tar"
    rel_outside = str(outside).lstrip("/")
    with tarfile.open(archive, "w") as tar:
        deep = "/".join(f"p{i}" for i in range(depth))
        _add(tar, f"imgs/{deep}/", type=tarfile.DIRTYPE)
        _link(tar, "imgs/d", deep)
        # checked now: imgs/<deep>/.. (depth + 1 times) is the target root, so it stays inside
        _link(tar, "imgs/e", "d/" + "../" * (depth + 1) + rel_outside)
        _link(tar, "imgs/d", ".")  # now d/.. (depth + 1 times) climbs to /
    return archive


def test_link_redirected_by_a_later_member_is_refused(tmp_path: Path) -> None:
    outside = _outside(tmp_path)
    archive = _moving_link_tar(tmp_path, outside)
    target = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="'imgs/e'"):
        safe_extract(archive, target)
    assert not target.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


@pytest.mark.parametrize(
    ("case", "member"),
    [
        ("link-to-link", "b"),
        ("through-link", "c"),
        ("redirect-to-up", "e"),
    ],
)
def test_variants_of_links_that_depend_on_links(tmp_path: Path, case: str, member: str) -> None:
    archive = tmp_path / f"{case}.tar"
    with tarfile.open(archive, "w") as tar:
        _add(tar, "sub/x.png", b"x")
        if case == "link-to-link":
            _link(tar, "a", "sub")
            _link(tar, "b", "a")  # b -> a -> sub: a later "a -> /" would carry b along
        elif case == "through-link":
            _link(tar, "a", "sub")
            _link(tar, "c", "a/x.png")
        else:
            _add(tar, "d1/d2/", type=tarfile.DIRTYPE)
            _link(tar, "d", "d1/d2")
            _link(tar, "e", "d/../../sub")
    with pytest.raises(UnsafeArchiveError, match=repr(member)):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_hard_link_to_a_symlink_cannot_escape(tmp_path: Path) -> None:
    """A hard link to a relative symlink placed elsewhere would resolve elsewhere."""
    outside = _outside(tmp_path)
    archive = tmp_path / "hard.tar"
    with tarfile.open(archive, "w") as tar:
        _add(tar, "a/b/ok.png", b"x")
        _link(tar, "a/b/l", "ok.png")
        _add(tar, "h", type=tarfile.LNKTYPE, linkname="a/b/l")
    try:
        out = safe_extract(archive, tmp_path / "out")
    except UnsafeArchiveError:
        assert not (tmp_path / "out").exists()
    else:
        from isomax.data.archive import check_extracted_tree

        check_extracted_tree(archive, out)  # whatever was written resolves inside
        for p in out.rglob("*"):
            assert os.path.realpath(p).startswith(os.path.realpath(out))
    assert (outside / "secret.png").read_bytes() == b"not yours"


def test_an_escaping_tree_already_in_the_cache_is_refused(tmp_path: Path) -> None:
    """An extraction left by an older isomax is checked again before it is used."""
    outside = _outside(tmp_path)
    target = tmp_path / "cached"
    (target / "imgs").mkdir(parents=True)
    (target / "imgs" / "e").symlink_to(outside)
    archive = tmp_path / "old.tar"
    with tarfile.open(archive, "w") as tar:
        _add(tar, "imgs/x.png", b"x")
    with pytest.raises(UnsafeArchiveError, match="points outside"):
        safe_extract(archive, target)


def test_ood_set_from_the_hostile_archive_reads_nothing_outside(tmp_path, monkeypatch) -> None:
    from isomax.data import get_dataset, get_ood_dataset

    monkeypatch.setenv("ISOMAX_CACHE", str(tmp_path / "cache"))
    outside = _outside(tmp_path)
    archive = _moving_link_tar(tmp_path, outside)
    bundle = get_dataset("digits")
    with pytest.raises(UnsafeArchiveError):
        get_ood_dataset(str(archive), like=bundle)


def test_zip_bomb_is_refused_before_writing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("ISOMAX_MAX_EXTRACT_GB", raising=False)
    monkeypatch.delenv("ISOMAX_MAX_EXTRACT_RATIO", raising=False)
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.bin", b"\0" * (80 << 20))  # 80 MiB of zeros, about 80 KB packed
    assert archive.stat().st_size < 1 << 20
    with pytest.raises(UnsafeArchiveError, match="ISOMAX_MAX_EXTRACT_RATIO"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
    # the user can raise the limit for an archive they trust
    monkeypatch.setenv("ISOMAX_MAX_EXTRACT_RATIO", "100000")
    out = safe_extract(archive, tmp_path / "out")
    assert (out / "a.bin").stat().st_size == 80 << 20


def test_tar_bomb_and_total_size_limit(tmp_path: Path, monkeypatch) -> None:
    archive = tmp_path / "bomb.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        _add(tar, "small.bin", b"\0" * 1000)
        _add(tar, "big.bin", b"\0" * (70 << 20))
    with pytest.raises(UnsafeArchiveError, match="'big.bin'.*decompression bomb"):
        safe_extract(archive, tmp_path / "out")
    monkeypatch.setenv("ISOMAX_MAX_EXTRACT_RATIO", "1e9")
    monkeypatch.setenv("ISOMAX_MAX_EXTRACT_GB", "0.01")  # 10 MB in all
    with pytest.raises(UnsafeArchiveError, match="more than 0.01 GB"):
        safe_extract(archive, tmp_path / "out")
    monkeypatch.setenv("ISOMAX_MAX_EXTRACT_GB", "-1")
    with pytest.raises(ValueError, match="ISOMAX_MAX_EXTRACT_GB must be a positive number"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
