"""Exceptions raised by the dataset layer."""

from __future__ import annotations

from ..errors import InputError

__all__ = [
    "ChecksumError",
    "CorruptImageError",
    "DatasetNotFoundError",
    "DownloadError",
    "UnsafeArchiveError",
]


class DatasetNotFoundError(FileNotFoundError):
    """Dataset files are not on disk and downloading was not allowed (or not possible)."""


class DownloadError(OSError):
    """A file could not be fetched from any of its URLs."""


class ChecksumError(InputError):
    """A file's MD5/SHA-256 digest differs from the published one."""


class UnsafeArchiveError(InputError):
    """An archive member would be written outside the target folder, or is a special file."""


class CorruptImageError(InputError):
    """An image file cannot be decoded (corrupt, truncated or not an image)."""
