"""Worked example: IsoMax+ on feature vectors (sentence or tabular embeddings), no images.

Synthetic 64-dimensional "embeddings": one Gaussian cluster per class for the in-distribution
data, and a cluster elsewhere for the out-of-distribution inputs (think: sentences from another
domain). An MLP with an IsoMax+ head is trained with IsoMaxLoss in a plain PyTorch loop; the
minimum distance score then separates ID from OOD inputs::

    python examples/feature_vectors.py --epochs 20
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import torch

import isomax
from isomax.metrics import accuracy, ood_metrics
from isomax.models import create_model
from isomax.scores import mds

DIM = 64


def make_data(num_classes: int, per_class: int, seed: int) -> dict[str, torch.Tensor]:
    """ID train/test embeddings (class centres at radius 6, noise std 1) and an OOD cluster."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_classes + 1, DIM, generator=g)
    centres = 6.0 * centres / centres.norm(dim=1, keepdim=True)
    ood_centre = centres[-1]  # one more cluster, never seen in training

    def sample(labels: torch.Tensor, centre: torch.Tensor | None = None) -> torch.Tensor:
        mean = centres[labels] if centre is None else centre.expand(len(labels), DIM)
        return mean + torch.randn(len(labels), DIM, generator=g)

    y_train = torch.arange(num_classes).repeat_interleave(per_class)
    y_test = torch.arange(num_classes).repeat_interleave(max(per_class // 2, 1))
    return {
        "x_train": sample(y_train),
        "y_train": y_train,
        "x_test": sample(y_test),
        "y_test": y_test,
        "x_ood": sample(torch.zeros(len(y_test), dtype=torch.long), ood_centre),
    }


def run(
    num_classes: int = 5,
    per_class: int = 200,
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 0.05,
    seed: int = 0,
) -> dict[str, float]:
    """Train and evaluate; returns ID accuracy and the OOD metrics of the MDS score."""
    torch.manual_seed(seed)
    data = make_data(num_classes, per_class, seed)
    model = create_model("mlp", num_classes, input_dim=DIM, head="isomaxplus")
    criterion = isomax.IsoMaxLoss()  # entropic scale 10
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True)
    dataset = torch.utils.data.TensorDataset(data["x_train"], data["y_train"])
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True)

    for _ in range(epochs):
        model.train()
        for x, y in loader:
            loss = criterion(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    model.eval()
    with torch.no_grad():
        id_logits = model(data["x_test"])
        ood_logits = model(data["x_ood"])
    result = ood_metrics(mds(id_logits), mds(ood_logits))
    result["accuracy"] = accuracy(torch.softmax(id_logits, dim=1), data["y_test"])
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--per-class", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = run(args.classes, args.per_class, args.epochs, seed=args.seed)
    print(
        f"ID accuracy {100 * result['accuracy']:.1f}%  |  OOD (score mds): "
        f"AUROC {100 * result['auroc']:.1f}%, FPR@95 {100 * result['fpr_at_tpr95']:.1f}%, "
        f"TNR@TPR95 {100 * result['tnr_at_tpr95']:.1f}%"
    )
    return result


if __name__ == "__main__":
    main()
