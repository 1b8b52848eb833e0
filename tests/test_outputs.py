"""Output folders are created writable; an output is never one of the inputs."""

from __future__ import annotations

import os

import pytest

from isomax.errors import InputError
from isomax.outputs import ensure_writable, refuse_onto, refuse_onto_images


def test_ensure_writable_creates_nested_folders(tmp_path) -> None:
    out = ensure_writable(tmp_path / "a" / "b")
    assert out.is_dir() and out == tmp_path / "a" / "b"


def test_ensure_writable_names_a_folder_it_cannot_create(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PermissionError, match="cannot create output folder"):
        ensure_writable(blocker / "sub")


def test_refuse_onto_the_same_file_by_path_or_by_link(tmp_path) -> None:
    src = tmp_path / "in.safetensors"
    src.write_bytes(b"x")
    with pytest.raises(InputError, match="--output .* is the input"):
        refuse_onto(tmp_path / "." / "in.safetensors", [src], "--output")
    link = tmp_path / "link"
    os.link(src, link)
    with pytest.raises(InputError, match="would overwrite it"):
        refuse_onto(link, [src])
    refuse_onto(tmp_path / "other.safetensors", [src])  # another file: allowed


def test_refuse_onto_an_image_read_from_an_input_folder(tmp_path, png_bytes) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.png").write_bytes(png_bytes(8))
    with pytest.raises(InputError, match="is the input"):
        refuse_onto_images(folder / "a.png", [folder], [tmp_path / "det.safetensors"])
    with pytest.raises(InputError, match="is the input"):
        refuse_onto_images(tmp_path / "det.safetensors", [folder], [tmp_path / "det.safetensors"])
    refuse_onto_images(folder / "out.csv", [folder])  # not an image it reads
