"""OOD sets for an evaluation: built from names, labelled, fingerprinted and counted.

A set is named by a registry name, ``folder:PATH`` or an archive path; it is brought to the ID
bundle's input shape and normalisation. A folder or archive set has a fingerprint (its files'
names, sizes and modification times) so that a finished run is reused only on the same files.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import InputError

__all__ = [
    "check_ood_names",
    "data_fingerprint",
    "evaluation_datasets",
    "ood_fingerprint",
    "ood_label",
    "skipped_files",
]

log = logging.getLogger(__name__)


def check_ood_names(names: Sequence[str]) -> None:
    """Fail on a malformed folder or archive path before any data is loaded."""
    from .data.registry import _local_path

    for name in names:
        _local_path(name)


def evaluation_datasets(
    bundle: Any,
    ood: Sequence[str],
    root: str | None = None,
    download: bool = False,
    max_samples: int | None = None,
    on_error: str = "raise",
) -> dict[str, Any]:
    """The OOD sets named in ``ood``, brought to the ID bundle's shape and normalisation.

    ``max_samples`` keeps a seeded random subset of each larger set. ``on_error`` (``"raise"``
    or ``"skip"``) applies to undecodable files of folders and archives; count the skipped
    ones after evaluating with :func:`skipped_files`. A set whose images have another size than
    the ID inputs is logged once, with both sizes.
    """
    from .data import get_ood_dataset
    from .data.registry import _local_path

    sets = {}
    for name in ood:
        kw = {"on_error": on_error} if _local_path(name) is not None else {}
        ds = get_ood_dataset(
            name, like=bundle, root=root, download=download, max_samples=max_samples, **kw
        )
        _log_resize(ood_label(name), ds, tuple(bundle.input_shape))
        sets[ood_label(name)] = ds
    if len(sets) != len(ood):
        raise InputError(f"ood names two sets with the same label: {list(ood)}")
    return sets


def _base_chain(ds: Any) -> list[Any]:
    chain = [ds]
    while getattr(chain[-1], "base", None) is not None and len(chain) < 10:
        chain.append(chain[-1].base)
    return chain


def _log_resize(label: str, ds: Any, shape: tuple[int, ...]) -> None:
    """Say once per OOD set when its images are resized to the ID input size."""
    from .data.core import AdaptedDataset
    from .data.images import ImageFilesDataset

    want = "x".join(str(v) for v in shape[1:])
    for part in _base_chain(ds):
        if isinstance(part, AdaptedDataset):
            got = "x".join(str(v) for v in part.base.shape[1:])
            if got != want:
                log.warning("OOD set %s: its %s images are resized to %s", label, got, want)
            return
        if isinstance(part, ImageFilesDataset):
            sizes = _file_sizes(part.files[:20])
            other = sorted(s for s in sizes if s != want)
            if other:
                shown = ", ".join(other[:3]) + (", ..." if len(other) > 3 else "")
                log.warning(
                    "OOD set %s: images of %s pixels (first %d files) are resized to %s",
                    label,
                    shown,
                    min(20, len(part.files)),
                    want,
                )
            return


def _file_sizes(files: Sequence[Path]) -> set[str]:
    """Image sizes as ``HxW``, read from the file headers (unreadable files left out)."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is needed to decode folders anyway
        return set()
    sizes = set()
    for f in files:
        try:
            with Image.open(f) as im:
                sizes.add(f"{im.size[1]}x{im.size[0]}")
        except OSError:
            continue
    return sizes


def skipped_files(ds: Any) -> int:
    """How many distinct undecodable files an OOD set skipped (``on_error="skip"``)."""
    for part in _base_chain(ds):
        skipped = getattr(part, "skipped", None)
        if isinstance(skipped, list) and skipped:
            return len(set(skipped))
    return 0


def data_fingerprint(name: str) -> str | None:
    """What identifies the content of a folder or archive data set (ID or OOD): a digest of the
    relative name, size and modification time of every image file the loaders read (a
    folder's hidden and non-image files do not count; linked folders do), or of the archive
    (``None`` for registry names)."""
    from .data.registry import _local_path

    path = _local_path(name)
    if path is None or not path.exists():
        return None
    from .data.images import find_images

    digest = hashlib.sha256()
    # a folder: the files its loaders read (images; hidden files skipped; links followed)
    files = [path] if path.is_file() else find_images(path)
    for f in files:
        st = f.stat()
        rel = f.name if f == path else f.relative_to(path).as_posix()
        digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


ood_fingerprint = data_fingerprint  # the name it had when only OOD sets were checked


def ood_label(name: str) -> str:
    """A short table label for an OOD set: the registry name, or a path's last component."""
    prefix, path = ("folder:", name[7:]) if name.startswith("folder:") else ("", name)
    if "/" not in path and "\\" not in path:
        from .data.registry import canonical_ood_name

        return canonical_ood_name(name) or name
    base = Path(path.rstrip("/\\")).name
    for suffix in (".tar.gz", ".tar.xz", ".tar.bz2", ".tgz", ".tar", ".zip"):
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
            break
    return prefix + base
