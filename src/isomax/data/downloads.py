"""Verified downloads and the local cache folder.

Files are streamed to a temporary file in the destination folder, checked against their
published digest (SHA-256 or MD5) and only then renamed into place, so a failed or tampered
download never leaves a file behind. ``file://`` URLs work like ``http(s)://`` ones, which is
how the tests exercise this module without a network.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .errors import ChecksumError, DatasetNotFoundError, DownloadError

__all__ = [
    "RemoteFile",
    "default_cache_dir",
    "download",
    "fetch_file",
    "file_digest",
    "verify_checksum",
    "writable_dir",
]

logger = logging.getLogger(__name__)

CACHE_ENV = "ISOMAX_CACHE"
_CHUNK = 1 << 20

# The function that opens URLs; tests may replace it (e.g. with monkeypatch) to simulate
# servers, outages or tampering.
urlopen: Callable[..., IO[bytes]] = urllib.request.urlopen


@dataclass(frozen=True)
class RemoteFile:
    """A published file: its name on disk, mirror URLs (tried in order) and its digest(s)."""

    filename: str
    urls: tuple[str, ...]
    md5: str | None = None
    sha256: str | None = None


def default_cache_dir() -> Path:
    """``$ISOMAX_CACHE`` if set, else ``~/.cache/isomax``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "isomax"


def writable_dir(path: Path) -> bool:
    """Whether ``path`` (or its nearest existing ancestor) can be written to."""
    p = Path(path)
    while not p.exists():
        if p.parent == p:
            return False
        p = p.parent
    return p.is_dir() and os.access(p, os.W_OK | os.X_OK)


def _hasher(algorithm: str) -> Any:
    # MD5 only identifies published files here; usedforsecurity=False keeps FIPS builds happy.
    return hashlib.new(algorithm, usedforsecurity=False)


def file_digest(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    h = _hasher(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _expected(sha256: str | None, md5: str | None) -> dict[str, str]:
    exp: dict[str, str] = {}
    if sha256:
        exp["sha256"] = sha256.lower()
    if md5:
        exp["md5"] = md5.lower()
    return exp


def verify_checksum(
    path: str | os.PathLike[str], sha256: str | None = None, md5: str | None = None
) -> None:
    """Raise :class:`ChecksumError` unless the file matches every digest given."""
    for algo, want in _expected(sha256, md5).items():
        got = file_digest(path, algo)
        if got != want:
            raise ChecksumError(
                f"checksum mismatch for {path}: expected {algo} {want}, got {got}; "
                "the file is corrupt, incomplete or not the published version"
            )


def download(
    url: str,
    dest: str | os.PathLike[str],
    sha256: str | None = None,
    *,
    md5: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying its SHA-256 and/or MD5.

    The data is streamed to a temporary file next to ``dest``, hashed on the fly, and renamed
    onto ``dest`` only when the digest matches. On a mismatch or any error the temporary file
    is removed: :class:`ChecksumError` for a wrong digest, :class:`DownloadError` when the URL
    cannot be read. Without any digest the file is kept unverified and a warning is logged.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    expected = _expected(sha256, md5)
    hashers = {algo: _hasher(algo) for algo in expected}
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        size = 0
        with os.fdopen(fd, "wb") as out:
            try:
                response: Any = urlopen(url, timeout=timeout)
                with response:
                    for chunk in iter(lambda: response.read(_CHUNK), b""):
                        out.write(chunk)
                        size += len(chunk)
                        for h in hashers.values():
                            h.update(chunk)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                raise DownloadError(f"could not download {url}: {exc}") from exc
            out.flush()
            os.fsync(out.fileno())
        for algo, want in expected.items():
            got = hashers[algo].hexdigest()
            if got != want:
                raise ChecksumError(
                    f"checksum mismatch for {url}: expected {algo} {want}, got {got}; "
                    f"the download was discarded and nothing was written to {dest}"
                )
        if not expected:
            logger.warning("no published checksum for %s; the file is not verified", url)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    logger.info("downloaded %s (%d bytes) to %s", url, size, dest)
    return dest


def fetch_file(
    remote: RemoteFile,
    search_dirs: Sequence[Path],
    download_dir: Path,
    allow_download: bool,
    what: str = "",
) -> Path:
    """Find ``remote.filename`` in ``search_dirs``, or download it into ``download_dir``.

    Existing local copies are used as they are (not re-hashed). Without ``allow_download``
    a missing file raises :class:`DatasetNotFoundError` listing every path looked at and the
    URL(s) to fetch it from by hand.
    """
    looked: list[Path] = []
    for d in search_dirs:
        candidate = Path(d) / remote.filename
        looked.append(candidate)
        if candidate.is_file():
            logger.debug("using local %s", candidate)
            return candidate
    label = what or remote.filename
    if not allow_download:
        raise DatasetNotFoundError(
            f"{label}: {remote.filename} not found; looked at:\n  "
            + "\n  ".join(str(p) for p in looked)
            + "\nPass download=True, or fetch it manually from "
            + " or ".join(remote.urls)
            + " and put it in one of those folders (or point root= at its folder)."
        )
    dest = Path(download_dir) / remote.filename
    errors: list[str] = []
    for url in remote.urls:
        try:
            return download(url, dest, remote.sha256, md5=remote.md5)
        except DownloadError as exc:
            logger.warning("%s", exc)
            errors.append(str(exc))
    raise DownloadError(
        f"{label}: could not download {remote.filename} from any mirror:\n  "
        + "\n  ".join(errors)
        + f"\nIf this machine is offline, fetch it manually and put it in {download_dir} "
        + "(or pass root= pointing at its folder). Looked for local copies at:\n  "
        + "\n  ".join(str(p) for p in looked)
    )
