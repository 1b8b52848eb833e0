"""evaluate / score_batches: vectorised image batches equal the per-item DataLoader path."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from isomax import metrics
from isomax.data import get_dataset, get_ood_dataset
from isomax.engine import evaluate, score_batches
from isomax.models import create_model


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    bundle = get_dataset("digits")
    model = create_model("digits_mlp", bundle.num_classes, head="isomaxplus").eval()
    return bundle, model


def test_image_dataset_batches_match_the_dataloader_path(setup):
    bundle, model = setup
    photos = get_ood_dataset("photos", like=bundle, max_samples=100)
    for ds in (bundle.test, photos):
        fast, logits, labels = score_batches(
            model, ds, ["mds", "es"], batch_size=64, keep_logits=True
        )
        slow, logits2, labels2 = score_batches(
            model, DataLoader(ds, batch_size=64), ["mds", "es"], keep_logits=True
        )
        for k in fast:
            torch.testing.assert_close(fast[k], slow[k])
        torch.testing.assert_close(logits, logits2)
        assert torch.equal(labels, labels2)


def test_evaluate_tables_equal_metrics_on_the_kept_scores(setup):
    bundle, model = setup
    ood = {"gaussian": get_ood_dataset("gaussian", like=bundle, max_samples=200)}
    ev = evaluate(model, bundle.test, ood, ["mds", "mps"], keep_scores=True, id_val_data=bundle.val)
    for s in ("mds", "mps"):
        want = metrics.ood_metrics(ev.scores["id"][s], ev.scores["gaussian"][s])
        assert ev.ood["gaussian"][s] == pytest.approx(want)
        assert ev.mean[s] == pytest.approx(want)
    assert 0.001 <= ev.id_metrics["temperature"] <= 100
    assert ev.id_metrics["n"] == len(bundle.test)
    assert sum(c for c in ev.reliability["counts"]) == len(bundle.test)
    with pytest.raises(ValueError, match="ood_data is empty"):
        evaluate(model, bundle.test, {}, ["mds"])


def test_evaluate_without_ood_sets_rejected():
    model = torch.nn.Linear(2, 3)
    with pytest.raises(ValueError, match=r"ood_data is empty: name at least one OOD set"):
        evaluate(model, [(torch.ones(2, 2), torch.tensor([0, 1]))], {})
