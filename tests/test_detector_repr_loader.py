"""OODDetector says what it is when printed, and predict takes a loader as well as a tensor."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import isomax
from isomax.detector import OODDetector


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(6, 16), nn.ReLU())
        self.head = isomax.IsoMaxPlusHead(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _loader(n: int = 130, labels: bool = True) -> DataLoader:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 6, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    data = TensorDataset(x, y) if labels else TensorDataset(x)
    return DataLoader(data, batch_size=32)


def test_repr_names_model_head_score_temperature_threshold_and_device():
    det = OODDetector(_Net(), score="mds")
    text = repr(det)
    assert text.startswith("OODDetector(") and "object at 0x" not in text
    assert "_Net with IsoMaxPlusHead" in text and "score='mds'" in text
    assert "threshold=not fitted" in text and "device=cpu" in text
    det.fit(_loader(), tpr=0.9)
    text = repr(det)
    assert f"threshold={det.threshold:.6g}" in text and "keeps 90.0% of ID validation" in text
    assert "temperature=1" in text


@pytest.mark.parametrize("labels", [True, False])
def test_predict_on_a_loader_equals_predict_on_the_concatenated_tensor(labels):
    det = OODDetector(_Net(), score="mds").fit(_loader(), tpr=0.95)
    loader = _loader(labels=labels)
    x = torch.cat([b[0] for b in loader])
    whole, batched = det.predict(x), det.predict(loader)
    for field in ("classes", "probs", "scores", "is_ood"):
        a, b = getattr(whole, field), getattr(batched, field)
        assert a.shape == b.shape and a.shape[0] == 130
        torch.testing.assert_close(a, b)


def test_predict_accepts_a_plain_list_of_batches_and_refuses_other_things():
    det = OODDetector(_Net(), score="es").fit(_loader())
    x = torch.randn(10, 6)
    out = det.predict([x[:4], x[4:]])
    torch.testing.assert_close(out.scores, det.predict(x).scores)
    with pytest.raises(TypeError, match="a tensor or a loader"):
        det.predict("images/")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        det.predict([])
