"""Safe, atomic extraction of tar and zip archives into the cache.

:func:`safe_extract` refuses members that would land outside the target folder (absolute
paths, ``..`` components, links pointing outside, writes through such links) and special files
(devices, FIFOs), links whose target is itself a link or passes through one, and archives that
would unpack to more than a size bound (decompression bombs, see :func:`extraction_limits`).
After the last member it checks the finished tree once more (every link must resolve inside the
target, no special file), so a link made harmless when written and redirected by a later member
is caught too. It extracts into a temporary sibling folder and renames it onto the target
only when everything succeeded, so the target's existence means "completely unpacked" and a
crash or a refused member leaves nothing half-written. On Pythons with tar extraction filters
(3.12, and 3.8-3.11 security releases) the ``"data"`` filter is applied as well.
"""

from __future__ import annotations

import hashlib
import logging
import lzma
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path

from ..errors import InputError
from .errors import UnsafeArchiveError

__all__ = [
    "ARCHIVE_SUFFIXES",
    "cached_extraction_dir",
    "check_extracted_tree",
    "extract_to_cache",
    "extraction_limits",
    "is_archive",
]

logger = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (
    ".tar",
    ".tar.gz",
    ".tgz",
    ".tar.bz2",
    ".tbz2",
    ".tar.xz",
    ".txz",
    ".zip",
)
_HAS_TAR_FILTERS = hasattr(tarfile, "data_filter")
_FILTER_ERRORS: tuple[type[Exception], ...] = (
    (tarfile.FilterError,) if _HAS_TAR_FILTERS else ()  # type: ignore[attr-defined]
)
_DRIVE = re.compile(r"^[A-Za-z]:")
MAX_BYTES_ENV = "ISOMAX_MAX_EXTRACT_GB"
MAX_RATIO_ENV = "ISOMAX_MAX_EXTRACT_RATIO"
DEFAULT_MAX_GB = 20.0
DEFAULT_MAX_RATIO = 100.0
_RATIO_FLOOR = 64 << 20  # the ratio bound applies once more than 64 MiB are unpacked


def extraction_limits() -> tuple[int, float]:
    """(most bytes an archive may unpack to, most unpacked / packed size ratio).

    Defaults: 20 GB and 100 (the ratio only counts beyond 64 MiB unpacked); raise them with the
    environment variables ``ISOMAX_MAX_EXTRACT_GB`` and ``ISOMAX_MAX_EXTRACT_RATIO``.
    """
    values = []
    for env, default in ((MAX_BYTES_ENV, DEFAULT_MAX_GB), (MAX_RATIO_ENV, DEFAULT_MAX_RATIO)):
        text = os.environ.get(env, "").strip()
        try:
            value = float(text) if text else default
        except ValueError:
            value = float("nan")
        if not value > 0 or value == float("inf"):
            raise InputError(f"{env} must be a positive number, got {text!r}")
        values.append(value)
    return int(values[0] * 1e9), values[1]


class _Budget:
    """Counts unpacked bytes and refuses an archive that would exceed the limits."""

    def __init__(self, archive: Path) -> None:
        self.archive = archive
        self.max_bytes, self.max_ratio = extraction_limits()
        self.packed = max(1, archive.stat().st_size)
        self.total = 0

    def add(self, n: int, name: str) -> None:
        self.total += max(0, int(n))
        ratio = self.total / self.packed
        if self.total > self.max_bytes:
            why = f"more than {self.max_bytes / 1e9:g} GB ({MAX_BYTES_ENV})"
        elif self.total > _RATIO_FLOOR and ratio > self.max_ratio:
            why = (
                f"{ratio:.0f} times its own size, more than the limit of "
                f"{self.max_ratio:g} ({MAX_RATIO_ENV})"
            )
        else:
            return
        raise UnsafeArchiveError(
            f"refusing to extract {self.archive}: it would unpack to {self.total} bytes "
            f"(at member {name!r}), {why}; a decompression bomb? If you trust the archive, "
            f"raise the limit with the environment variable {MAX_BYTES_ENV} or {MAX_RATIO_ENV}"
        )


def is_archive(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` has a supported archive suffix (tar with any compression, or zip)."""
    name = os.fspath(path).lower()
    return any(name.endswith(s) for s in ARCHIVE_SUFFIXES)


def _archive_stem(path: Path) -> str:
    name = path.name
    for s in sorted(ARCHIVE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(s):
            return name[: -len(s)]
    return path.stem


def _within(root: str, path: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def _check_name(archive: Path, name: str) -> None:
    """Refuse absolute names, drive letters and ``..`` components."""
    if not name or "\x00" in name:
        raise UnsafeArchiveError(
            f"refusing to extract {archive}: member {name!r} has no valid name"
        )
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        raise UnsafeArchiveError(
            f"refusing to extract {archive}: member {name!r} has an absolute path"
        )
    if ".." in re.split(r"[\\/]", name):
        raise UnsafeArchiveError(
            f"refusing to extract {archive}: member {name!r} contains '..' and would escape the "
            "target folder"
        )


def _dest(archive: Path, root: str, name: str) -> str:
    """Resolved destination of ``name`` inside ``root`` (following existing links)."""
    dest = os.path.realpath(os.path.join(root, name))
    if not _within(root, dest):
        raise UnsafeArchiveError(
            f"refusing to extract {archive}: member {name!r} would be written outside the target "
            f"folder (to {dest}), e.g. through a link"
        )
    return dest


def _extract_tar(archive: Path, root: str) -> None:
    budget = _Budget(archive)
    kwargs = {"filter": "data"} if _HAS_TAR_FILTERS else {}
    with tarfile.open(archive, "r:*") as tar:
        # Read one header at a time and extract it immediately: a single pass over the
        # (possibly compressed) stream, with every check made before anything is written.
        while (member := tar.next()) is not None:
            name = member.name
            _check_name(archive, name)
            dest = _dest(archive, root, name)
            if member.isdir():
                os.makedirs(dest, exist_ok=True)
                continue
            if member.issym():
                link = member.linkname
                if os.path.isabs(link) or _DRIVE.match(link):
                    raise UnsafeArchiveError(
                        f"refusing to extract {archive}: member {name!r} is a symlink to the "
                        f"absolute path {link!r}"
                    )
                raw = os.path.join(os.path.dirname(dest), link)
                target = os.path.realpath(raw)
                if not _within(root, target):
                    raise UnsafeArchiveError(
                        f"refusing to extract {archive}: member {name!r} is a symlink pointing "
                        f"outside the target folder ({link!r})"
                    )
                if target != os.path.normpath(raw):
                    # a later member could redirect that link and with it this one
                    raise UnsafeArchiveError(
                        f"refusing to extract {archive}: member {name!r} is a symlink whose "
                        f"target {link!r} is itself a link or passes through one"
                    )
            elif member.islnk():
                link = member.linkname
                bad = not link or os.path.isabs(link) or ".." in re.split(r"[\\/]", link)
                if bad or not _within(root, os.path.realpath(os.path.join(root, link))):
                    raise UnsafeArchiveError(
                        f"refusing to extract {archive}: member {name!r} is a hard link pointing "
                        f"outside the target folder ({link!r})"
                    )
            elif not member.isreg():
                raise UnsafeArchiveError(
                    f"refusing to extract {archive}: member {name!r} is a device file, FIFO or "
                    "other special file"
                )
            else:
                budget.add(member.size, name)
            literal = os.path.join(root, name)
            if os.path.islink(literal):
                os.unlink(literal)  # replace a link left by an earlier member, never follow it
            try:
                tar.extract(member, root, set_attrs=False, **kwargs)  # type: ignore[arg-type]
            except _FILTER_ERRORS as exc:  # pragma: no cover - our checks come first
                raise UnsafeArchiveError(f"refusing to extract {archive}: {exc}") from exc


def _extract_zip(archive: Path, root: str) -> None:
    with zipfile.ZipFile(archive) as zf:
        declared = _Budget(archive)  # refuse at once on the sizes the archive declares
        for info in zf.infolist():
            declared.add(info.file_size, info.filename)
        budget = _Budget(archive)  # and count what is really written
        for info in zf.infolist():
            name = info.filename
            _check_name(archive, name)
            dest = _dest(archive, root, name)
            ftype = stat.S_IFMT(info.external_attr >> 16)  # 0 when no Unix type was stored
            if ftype == stat.S_IFLNK:
                raise UnsafeArchiveError(
                    f"refusing to extract {archive}: member {name!r} is a symlink (links in zip "
                    "archives are not supported)"
                )
            if ftype and ftype not in (stat.S_IFREG, stat.S_IFDIR):
                raise UnsafeArchiveError(
                    f"refusing to extract {archive}: member {name!r} is a device file, FIFO or "
                    "other special file"
                )
            if info.is_dir():
                os.makedirs(dest, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with zf.open(info) as src, open(dest, "wb") as out:
                while chunk := src.read(1 << 20):
                    budget.add(len(chunk), name)
                    out.write(chunk)


def check_extracted_tree(archive: str | os.PathLike[str], root: str | os.PathLike[str]) -> None:
    """Refuse a finished extraction holding a link that resolves outside ``root``, or a special file.

    The walk never follows links, so a hostile link is reported rather than traversed.
    """
    real_root = os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(real_root, followlinks=False):
        for name in [*dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, real_root)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                target = os.path.realpath(path)
                if not _within(real_root, target):
                    raise UnsafeArchiveError(
                        f"refusing to use {archive}: after extraction the link {rel!r} points "
                        f"outside the target folder (to {target}), e.g. redirected by a later "
                        "member"
                    )
            elif not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
                raise UnsafeArchiveError(
                    f"refusing to use {archive}: {rel!r} is a device file, FIFO or other "
                    "special file"
                )


def safe_extract(archive: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Extract a tar (any compression) or zip archive into the folder ``target``, atomically.

    If ``target`` already exists it is taken to be a previous complete extraction and is
    returned untouched. Otherwise members are checked and written into a temporary sibling
    folder which is renamed to ``target`` at the end; on any error (including
    :class:`UnsafeArchiveError` naming the offending member) the temporary folder is removed
    and nothing is left behind.
    """
    archive = Path(archive)
    target = Path(target)
    if target.is_dir():
        logger.debug("%s already extracted to %s", archive, target)
        check_extracted_tree(archive, target)  # e.g. unpacked by an older, laxer isomax
        return target
    if not archive.is_file():
        raise FileNotFoundError(f"archive {archive} does not exist")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.partial-")
    root = os.path.realpath(tmp)
    try:
        if archive.name.lower().endswith(".zip"):
            _extract_zip(archive, root)
        elif tarfile.is_tarfile(archive):
            _extract_tar(archive, root)
        elif zipfile.is_zipfile(archive):
            _extract_zip(archive, root)
        else:
            raise InputError(
                f"{archive} is not a tar or zip archive (supported: {', '.join(ARCHIVE_SUFFIXES)})"
            )
        check_extracted_tree(archive, root)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():
                raise
            logger.debug("%s was extracted concurrently; using that copy", target)
            shutil.rmtree(tmp, ignore_errors=True)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise InputError(f"{archive} is corrupt or truncated: {exc}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    logger.info("extracted %s to %s", archive, target)
    return target


def cached_extraction_dir(
    archive: str | os.PathLike[str], cache_dir: str | os.PathLike[str]
) -> Path:
    """Where :func:`extract_to_cache` unpacks ``archive``: ``cache_dir/extracted/<stem>-<key>``.

    The key hashes the archive's absolute path, size and modification time, so a replaced
    archive is unpacked afresh while repeated calls reuse the first extraction.
    """
    archive = Path(archive).resolve()
    st = archive.stat()
    key = hashlib.sha256(f"{archive}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:12]
    return Path(cache_dir) / "extracted" / f"{_archive_stem(archive)}-{key}"


def extract_to_cache(archive: str | os.PathLike[str], cache_dir: str | os.PathLike[str]) -> Path:
    """Unpack ``archive`` once into the cache (see :func:`cached_extraction_dir`); its folder."""
    return safe_extract(archive, cached_extraction_dir(archive, cache_dir))
