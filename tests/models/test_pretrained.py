"""Weights trained elsewhere: He et al.'s CIFAR ResNet files, state dicts, isomax checkpoints.

The reference forward pass below is written from the published architecture (3x3 stem, three
stages of basic blocks, option-A shortcuts: subsample by 2 and zero-pad planes // 4 channels on
each side, global average pooling, ``linear``) directly on the file's keys, so the mapping onto
:class:`isomax.models.ThinResNet` is checked against an independent implementation.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor

from isomax.models import create_model
from isomax.models.pretrained import build_pretrained, load_weights, read_state_dict


def reference_forward(sd: dict[str, Tensor], x: Tensor, n: int) -> Tensor:
    """He et al.'s CIFAR ResNet (option A), written on the file's own keys, eval mode."""
    p = {k.removeprefix("module."): v for k, v in sd.items()}

    def bn(t: Tensor, name: str) -> Tensor:
        return F.batch_norm(
            t,
            p[f"{name}.running_mean"],
            p[f"{name}.running_var"],
            p[f"{name}.weight"],
            p[f"{name}.bias"],
            training=False,
            eps=1e-5,
        )

    out = F.relu(bn(F.conv2d(x, p["conv1.weight"], padding=1), "bn1"))
    for s in (1, 2, 3):
        for i in range(n):
            pre = f"layer{s}.{i}"
            stride = 2 if s > 1 and i == 0 else 1
            h = F.relu(
                bn(F.conv2d(out, p[f"{pre}.conv1.weight"], stride=stride, padding=1), f"{pre}.bn1")
            )
            h = bn(F.conv2d(h, p[f"{pre}.conv2.weight"], padding=1), f"{pre}.bn2")
            if stride != 1 or out.shape[1] != h.shape[1]:
                planes = h.shape[1]
                short = F.pad(out[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))
            else:
                short = out
            out = F.relu(h + short)
    return F.linear(out.mean(dim=(2, 3)), p["linear.weight"], p["linear.bias"])


@pytest.mark.parametrize("n", [1, 3])
def test_he_resnet_file_matches_the_reference_forward(
    tmp_path: Path, n: int, make_he_state_dict
) -> None:
    sd = make_he_state_dict(n)
    path = tmp_path / "resnet.th"
    torch.save({"best_prec1": 91.5, "state_dict": sd}, path)
    weights = load_weights(path)
    assert weights.model == f"resnet{6 * n + 2}" and weights.num_classes == 10
    assert weights.info == {"best_prec1": 91.5}
    model = build_pretrained(weights, path).eval()
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference_forward(sd, x, n), rtol=1e-4, atol=1e-4)


def test_the_shared_resnets_load_when_present() -> None:
    folder = Path(__file__).resolve().parents[3] / "shared" / "pretrained" / "cifar10_resnets"
    files = sorted(folder.glob("resnet*.th"))
    if not files:
        pytest.skip("../shared/pretrained is not beside this checkout")
    for f in files:
        weights = load_weights(f)
        model = build_pretrained(weights, f)
        depth = int(f.name.split("-")[0].removeprefix("resnet"))
        assert weights.model == f"resnet{depth}" and model.num_classes == 10


def test_safetensors_and_plain_state_dicts(tmp_path: Path, make_he_state_dict) -> None:
    sd = make_he_state_dict(1)
    st = tmp_path / "w.safetensors"
    save_file({k.removeprefix("module."): v.contiguous() for k, v in sd.items()}, str(st))
    assert load_weights(st).model == "resnet8"
    plain = tmp_path / "plain.pt"
    torch.save(sd, plain)
    assert load_weights(plain).model == "resnet8"
    # a registered model's own state dict, named with model=
    own = create_model("digits_mlp", 10, in_channels=1)
    path = tmp_path / "mlp.pt"
    torch.save({"model": own.state_dict()}, path)
    weights = load_weights(path, "digits_mlp")
    rebuilt = build_pretrained(weights, path, in_channels=1)
    for key, value in own.state_dict().items():
        torch.testing.assert_close(rebuilt.state_dict()[key], value)


class _Evil:
    def __reduce__(self):  # pragma: no cover - must never run
        return (print, ("pwned",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_a_pickle_with_code_is_refused_without_running_it(
    tmp_path: Path, capsys, make_he_state_dict
) -> None:
    path = tmp_path / "evil.th"
    torch.save({"state_dict": make_he_state_dict(1), "hook": _Evil()}, path)
    with pytest.raises(ValueError, match="never unpickled"):
        read_state_dict(path)
    assert "pwned" not in capsys.readouterr().out
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(ValueError, match="never unpickled"):
        read_state_dict(raw)


def test_bad_files_say_what_was_expected(tmp_path: Path, make_he_state_dict) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_weights(tmp_path / "missing.th")
    empty = tmp_path / "empty.th"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        load_weights(empty)
    good = tmp_path / "good.th"
    torch.save(make_he_state_dict(1), good)
    cut = tmp_path / "cut.th"
    cut.write_bytes(good.read_bytes()[:300])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_weights(cut)
    other = tmp_path / "other.pt"
    torch.save({"encoder.w": torch.zeros(3, 3)}, other)
    with pytest.raises(ValueError, match="matches no known layout"):
        load_weights(other)
    with pytest.raises(ValueError, match="not the model 'resnet20'"):
        load_weights(good, "resnet20")
    bad_blocks = make_he_state_dict(2)
    bad_blocks = {k: v for k, v in bad_blocks.items() if "layer3.1." not in k}
    torch.save(bad_blocks, other)
    with pytest.raises(ValueError, match="same n blocks"):
        load_weights(other)
    wrong = tmp_path / "wrong.pt"
    torch.save(create_model("digits_mlp", 10, in_channels=1).state_dict(), wrong)
    with pytest.raises(ValueError, match="does not fit 'digits_cnn'"):
        build_pretrained(load_weights(wrong, "digits_cnn"), wrong, in_channels=1)
    text = tmp_path / "notes.safetensors"
    text.write_text("hello, these are not weights")
    with pytest.raises(ValueError, match="neither a PyTorch weights file nor a safetensors"):
        load_weights(text)


def test_a_safetensors_header_length_ending_in_0x80_is_not_a_pickle(tmp_path: Path) -> None:
    """The low byte of the header length may be 0x80, a pickle's first byte: read it anyway."""
    for pad in range(300):
        path = tmp_path / "w.safetensors"
        save_file({"conv1.weight": torch.zeros(2), "x" * (pad + 1): torch.zeros(1)}, str(path))
        if path.read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail("no header length ending in 0x80 was produced")
    state, _ = read_state_dict(path)
    assert "conv1.weight" in state
