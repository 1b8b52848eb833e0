"""Safe files: pickles are refused without being run; written files get the usual permissions."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from isomax.detector import OODDetector
from isomax.engine import load_model
from isomax.io import UnsafeFileError, save_file


@pytest.mark.parametrize("kind", ["pickle4", "pickle0", "torch_save"])
@pytest.mark.parametrize("loader", ["load_model", "OODDetector.load"])
def test_pickle_refused_without_running_it(pickles, kind, loader):
    with pytest.raises(ValueError, match=pickles.refusal) as info:
        if loader == "load_model":
            load_model(pickles.files[kind])
        else:
            OODDetector.load(pickles.files[kind], model=torch.nn.Linear(2, 3))
    if kind != "pickle0":  # protocol 0 has no magic bytes; it is refused as not-safetensors
        assert isinstance(info.value, UnsafeFileError)
    assert not pickles.marker.exists(), "the pickle was executed"


def test_written_files_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = save_file(tmp_path / "x.safetensors", {"a": torch.zeros(1)}, {}, "scores")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
