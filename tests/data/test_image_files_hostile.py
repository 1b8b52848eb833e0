"""Image files that lie: FIFOs and devices, 16-bit and float pixels, one-class folders."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from isomax.data import CorruptImageError, ImageFolderDataset, decode_image
from isomax.data.inputs import load_images

PIL = pytest.importorskip("PIL.Image")


def _png(path: Path, value: int = 128, size: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)
    return path


DECODE_IN_CHILD = textwrap.dedent(
    """
    import sys
    from isomax.data import CorruptImageError, decode_image
    try:
        decode_image(sys.argv[1])
    except CorruptImageError as exc:
        print(exc)
        sys.exit(3)
    """
)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_fifo_named_like_an_image_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "a.png"
    os.mkfifo(fifo)
    # in a child process: the old code blocked forever in open()
    proc = subprocess.run(
        [sys.executable, "-c", DECODE_IN_CHILD, str(fifo)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3, proc.stderr
    assert "a.png is a FIFO (named pipe), not an image file" in proc.stdout


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
@pytest.mark.parametrize("on_error", ["skip", "raise"])
def test_fifo_in_a_folder_is_skipped_or_refused(tmp_path, on_error):
    folder = tmp_path / "imgs"
    _png(folder / "good.png")
    os.mkfifo(folder / "bad.png")
    code = textwrap.dedent(
        f"""
        from isomax.data import CorruptImageError
        from isomax.data.inputs import load_images
        try:
            _, kept, skipped = load_images([{str(folder)!r}], (3, 8, 8), [0] * 3, [1] * 3,
                                           on_error={on_error!r})
            print(len(kept), skipped)
        except CorruptImageError as exc:
            print("refused", exc)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    if on_error == "skip":
        assert proc.stdout.startswith("1 [") and "bad.png" in proc.stdout
    else:
        assert proc.stdout.startswith("refused") and "FIFO" in proc.stdout


@pytest.mark.parametrize("kind", ["device", "socket", "folder"])
def test_devices_sockets_and_folders_are_not_read(tmp_path, kind):
    if kind == "device":
        path = Path("/dev/zero")
        if not path.exists():
            pytest.skip("no /dev/zero")
        expected = "a character device"
    elif kind == "socket":
        path = tmp_path / "s.png"
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        expected = "a socket"
    else:
        path = tmp_path / "d.png"
        path.mkdir()
        expected = "a folder"
    with pytest.raises(CorruptImageError, match=f"is {expected}.*not an image file"):
        decode_image(path)
    if kind != "folder":
        _, kept, skipped = load_images(
            [_png(tmp_path / "ok.png"), path], (3, 8, 8), [0] * 3, [1] * 3, on_error="skip"
        )
        assert len(kept) == 1 and skipped == [str(path)]


def test_16_bit_grey_png_is_scaled(tmp_path):
    values = np.array([[0, 257, 32768, 65535]], np.uint16)
    path = tmp_path / "g16.png"
    PIL.fromarray(values).save(path)
    assert PIL.open(path).mode.startswith("I;16")
    grey = decode_image(path, channels=1)[0, 0].tolist()
    assert grey == [0, 1, 128, 255]  # round(v / 257); mid-grey 32768 stays mid-grey
    rgb = decode_image(path, channels=3)
    assert rgb[:, 0, 2].tolist() == [128, 128, 128]


def test_float_tiff_is_scaled_or_refused(tmp_path):
    path = tmp_path / "f.tif"
    PIL.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32)).save(path)
    assert decode_image(path, channels=1)[0, 0].tolist() == [0, 128, 255]
    bad = tmp_path / "hdr.tif"
    PIL.fromarray(np.array([[0.0, 7.5]], np.float32)).save(bad)
    with pytest.raises(CorruptImageError, match=r"hdr.tif.*values in \[0, 1\], found 0 to 7.5"):
        decode_image(bad)


def test_32_bit_integer_image_outside_16_bit_is_refused(tmp_path):
    path = tmp_path / "i32.tif"
    PIL.fromarray(np.array([[0, 70000]], np.int32)).save(path)
    with pytest.raises(CorruptImageError, match="i32.tif.*16-bit values"):
        decode_image(path)
    ok = tmp_path / "i16.tif"
    PIL.fromarray(np.array([[0, 65535]], np.int32)).save(ok)
    assert decode_image(ok, channels=1)[0, 0].tolist() == [0, 255]


def test_one_class_folder_is_refused_for_what_it_is(tmp_path):
    _png(tmp_path / "one" / "cat" / "a.png")
    with pytest.raises(ValueError, match="only one class folder, 'cat'.*at least 2 classes"):
        ImageFolderDataset(tmp_path / "one")
    # the dataset registry descends through a single wrapper folder: the message still says it
    from isomax.data import get_dataset

    with pytest.raises(ValueError, match="holds images directly.*'cat' is your only class"):
        get_dataset(f"folder:{tmp_path / 'one'}")
