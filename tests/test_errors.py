"""User mistakes (exit 2, one line) against defects in isomax (exit 1, traceback, report)."""

from __future__ import annotations

import errno
import re
from pathlib import Path

import pytest

import isomax.cli as cli
from isomax.cli import listing
from isomax.data.errors import ChecksumError, CorruptImageError, DownloadError
from isomax.engine import NonFiniteLossError
from isomax.engine.checkpoint import RunFolderLockedError
from isomax.errors import InputError, is_user_error


def _run_list_raising(monkeypatch, capsys, exc: BaseException) -> tuple[int, str]:
    def broken(args):
        raise exc

    monkeypatch.setattr(listing, "cmd_list", broken)
    code = cli.main(["list"])
    return code, capsys.readouterr().err


def test_a_defect_shows_its_traceback_and_asks_for_a_report(monkeypatch, capsys) -> None:
    code, err = _run_list_raising(monkeypatch, capsys, ValueError("index out of sync"))
    assert code == 1
    assert "Traceback (most recent call last)" in err and "index out of sync" in err
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith("isomax list: internal error (ValueError): this is a defect in isomax")
    )
    code, err = _run_list_raising(monkeypatch, capsys, OSError(errno.EIO, "I/O error"))
    assert code == 1 and "internal error (OSError)" in err


@pytest.mark.parametrize(
    "exc",
    [
        InputError("epochs must be a positive integer, got 0"),
        ChecksumError("sha256 differs"),
        CorruptImageError("cannot decode a.png"),
        NonFiniteLossError("the training loss became nan"),
        FileNotFoundError("weights file w.th does not exist"),
        PermissionError("output folder out is not writable"),
        OSError(errno.ENOSPC, "No space left on device"),
        DownloadError("no URL answered"),
        RunFolderLockedError("runs/x is in use by pid 12 on host"),
        ImportError("timm models need the optional dependency timm"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_user_mistakes_are_one_line_with_exit_2(monkeypatch, capsys, exc) -> None:
    assert is_user_error(exc)
    code, err = _run_list_raising(monkeypatch, capsys, exc)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("isomax list: error: ")


def test_library_checks_raise_input_error_not_bare_value_error() -> None:
    """Every check in the library raises InputError (a ValueError), so the command line can tell
    a user's mistake from a defect; a bare ``raise ValueError(`` would be shown as a defect."""
    src = Path(__file__).resolve().parents[1] / "src" / "isomax"
    offenders = [
        f"{p.relative_to(src)}:{i}"
        for p in src.rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if re.search(r"raise ValueError\(", line)
    ]
    assert offenders == []
