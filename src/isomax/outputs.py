"""Where results go: output folders that exist and are writable, never onto an input file."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .errors import InputError

__all__ = ["ensure_writable", "refuse_onto", "refuse_onto_images"]


def ensure_writable(path: str | os.PathLike[str]) -> Path:
    """Create the folder ``path`` (and its parents) and check it is writable; returns it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PermissionError(f"cannot create output folder {path}: {exc.strerror}") from None
    if not os.access(path, os.W_OK):
        raise PermissionError(f"output folder {path} is not writable")
    return path


def refuse_onto(
    output: str | os.PathLike[str],
    inputs: Sequence[str | os.PathLike[str]],
    option: str = "output",
) -> None:
    """Refuse an output path that is one of the input files (``option`` names the output)."""
    out = Path(output)
    for src in inputs:
        src = Path(src)
        same = out.resolve() == src.resolve()
        if not same and out.exists() and src.exists():
            same = os.path.samefile(out, src)
        if same:
            raise InputError(
                f"{option} {output} is the input {src}: writing there would overwrite it; "
                "choose another path"
            )


def refuse_onto_images(
    output: str | os.PathLike[str],
    paths: Sequence[str | os.PathLike[str]],
    others: Sequence[str | os.PathLike[str]] = (),
    option: str = "output",
) -> None:
    """Refuse an output that is one of the image files or an image inside the folders in
    ``paths`` (as they would be read), or one of ``others``."""
    from .data.images import find_images

    files: list[str | os.PathLike[str]] = [p for p in paths if Path(p).is_file()]
    out = Path(output).resolve()
    for folder in (Path(p) for p in paths if Path(p).is_dir()):
        if out.is_relative_to(folder.resolve()):  # an image of the folder, read below
            files += [f for f in find_images(folder) if Path(f).resolve() == out]
    refuse_onto(output, [*others, *files], option)
