"""The ``isomax`` argument parser: one sub-command per task, with examples in each help."""

from __future__ import annotations

import argparse

# Modules, not functions: the commands are looked up when the parser is built.
from . import comparison, evaluation, listing, training
from .options import (
    ON_ERROR_HELP,
    POSTHOC_HELP,
    _add_train_options,
    _csv_list,
    _on_error,
    _positive_int,
    _rate,
)

EXAMPLES: dict[str, tuple[str, ...]] = {
    "demo": ("isomax demo", "isomax demo --output-dir /tmp/demo --no-figures"),
    "compare": (
        "isomax compare --seeds 3 --ood digits-5to9,photos --dataset digits-0to4",
        "isomax compare --dataset cifar10 --model resnet18 --preset fast --seeds 3 "
        "--ood svhn,folder:/data/my_ood --data-root ~/data --download --output-dir runs/c10",
    ),
    "train": (
        "isomax train --loss isomaxplus --epochs 20 --output-dir runs/digits",
        "isomax train --dataset cifar10 --model resnet34 --loss isomaxplus --preset paper "
        "--data-root ~/data --download",
    ),
    "evaluate": (
        "isomax evaluate runs/train/checkpoint.safetensors --ood gaussian,photos",
        "isomax evaluate CKPT --ood svhn,folder:/data/my_ood --on-error skip --save-scores",
    ),
    "calibrate": (
        "isomax calibrate runs/train/checkpoint.safetensors",
        "isomax calibrate CKPT --objective ece --tpr 0.99 --output detector.safetensors",
    ),
    "detect": (
        "isomax detect runs/train/detector.safetensors photos/ --output predictions.csv",
        "isomax detect DETECTOR a.png b.jpg --on-error fail",
    ),
    "finetune": (
        "isomax finetune --checkpoint softmax-run/checkpoint.safetensors --loss isomaxplus",
        "isomax finetune --pretrained timm:resnet18 --dataset cifar10 --ood svhn --epochs 3",
    ),
    "list": ("isomax list",),
}


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' line breaks and appends ``(default: X)`` to help texts that do not
    name their default already."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or not action.option_strings
            or default is None
            or default is False
            or default == argparse.SUPPRESS
            or isinstance(action, argparse._HelpAction | argparse._VersionAction)
        ):
            return text
        if isinstance(default, list | tuple):
            shown = ",".join(map(str, default)) if default else "none"
        elif default == "raise" and "--on-error" in action.option_strings:
            shown = "fail"
        else:
            shown = "%(default)s"
        return f"{text} (default: {shown})"


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="isomax", description="IsoMax-family losses for out-of-distribution detection."
    )
    parser.add_argument("--version", action="version", version=f"isomax {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "demo",
        help="compare the four losses on data shipped with isomax (Fashion-MNIST subset "
        "against handwritten digits, photos and noise; under a minute on a CPU)",
        description="SoftMax against IsoMax, IsoMax+ and DisMax, 3 seeds each, on a 2,000-image "
        "Fashion-MNIST subset shipped with isomax; OOD: scikit-learn's handwritten digits, "
        "photo patches and noise. Prints the table and which method won; writes a report with "
        "figures.",
    )
    p.add_argument(
        "--output-dir", default="isomax-demo", help="report folder (default: %(default)s)"
    )
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    p.set_defaults(func=comparison.cmd_demo)

    p = sub.add_parser(
        "compare", help="train and evaluate several losses and seeds; write a report"
    )
    p.add_argument(
        "--losses",
        type=_csv_list,
        default=["softmax", "isomax", "isomaxplus", "dismax"],
        help="losses to compare, comma-separated",
    )
    p.add_argument("--seeds", type=_positive_int, default=1, help="seeds 0 .. N-1 per loss")
    p.add_argument(
        "--seed-list",
        type=_csv_list,
        help="explicit seeds instead of --seeds, e.g. 2,3 (runs in the same output "
        "folder are shared between invocations) (default: none)",
    )
    p.add_argument(
        "--ood",
        type=_csv_list,
        default=["gaussian", "uniform", "photos"],
        help="OOD sets: names (see `isomax list`), folder:PATH or archives, comma-separated",
    )
    p.add_argument(
        "--max-ood",
        type=_positive_int,
        help="evaluate on at most N inputs of each OOD set (default: all)",
    )
    p.add_argument("--output-dir", default="runs/compare", help="report folder")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    p.add_argument("--posthoc", type=_csv_list, help=POSTHOC_HELP)
    _add_train_options(p, skip=("loss", "seed"))
    p.set_defaults(func=comparison.cmd_compare)

    p = sub.add_parser("train", help="train one model")
    _add_train_options(p)
    p.add_argument("--output-dir", help="where the checkpoint and logs go (default: runs/train)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint there")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a run already in --output-dir (its checkpoint, logs, detector and "
        "evaluation are removed); without it such a folder is refused (default: off)",
    )
    p.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar and no per-epoch lines"
    )
    p.set_defaults(func=training.cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a checkpoint against OOD sets")
    p.add_argument(
        "checkpoint", help="a checkpoint.safetensors written by `isomax train` or `compare`"
    )
    p.add_argument(
        "--ood",
        type=_csv_list,
        required=True,
        help="OOD sets (required): names (see `isomax list`), folder:PATH or archives, "
        "comma-separated",
    )
    p.add_argument(
        "--scores",
        type=_csv_list,
        help="scores to report, comma-separated (default: the scores that suit the loss)",
    )
    p.add_argument(
        "--max-ood",
        type=_positive_int,
        help="evaluate on at most N inputs of each OOD set (default: all)",
    )
    p.add_argument("--dataset", help="ID dataset (default: the one it was trained on)")
    p.add_argument("--data-root", help="folder holding the dataset files (default: the cache)")
    p.add_argument(
        "--temperature", type=float, default=1.0, help="divide the logits by T before scoring"
    )
    p.add_argument("--batch-size", type=_positive_int, default=512, help="inference batch size")
    p.add_argument(
        "--on-error", type=_on_error, default="raise", metavar="{skip,fail}", help=ON_ERROR_HELP
    )
    p.add_argument("--save-scores", action="store_true", help="also write scores.safetensors")
    p.add_argument("--posthoc", type=_csv_list, help=POSTHOC_HELP)
    p.add_argument(
        "--openood-csv",
        help="also write OpenOOD v1.5's ood.csv layout here, for the loss's recommended "
        "score (default: not written)",
    )
    p.add_argument(
        "--near",
        type=_csv_list,
        default=[],
        help="OOD sets of the near-OOD group in the OpenOOD CSV (the rest are far) (default: none)",
    )
    p.add_argument("--output-dir", help="result folder (default: <checkpoint folder>/evaluation)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    p.set_defaults(func=evaluation.cmd_evaluate)

    p = sub.add_parser(
        "calibrate",
        help="fit temperature and threshold on the validation split and save a detector",
    )
    p.add_argument(
        "checkpoint", help="a checkpoint.safetensors written by `isomax train` or `compare`"
    )
    p.add_argument(
        "--score", help="OOD score (see `isomax list`) (default: the loss's recommended score)"
    )
    p.add_argument(
        "--objective",
        choices=["nll", "ece", "none"],
        default="nll",
        help="what the temperature minimises on the validation split (none: keep T = 1)",
    )
    p.add_argument(
        "--tpr",
        type=_rate,
        default=0.95,
        help="share of ID validation inputs the threshold keeps, in (0, 1]",
    )
    p.add_argument(
        "--dataset",
        help="ID dataset (default: the one it was trained on, when that is a registry name)",
    )
    p.add_argument("--data-root", help="folder holding the dataset files (default: the cache)")
    p.add_argument("--batch-size", type=_positive_int, default=512, help="inference batch size")
    p.add_argument(
        "--output", help="detector file (default: <checkpoint folder>/detector.safetensors)"
    )
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    p.set_defaults(func=evaluation.cmd_calibrate)

    p = sub.add_parser("detect", help="classify image files and flag OOD ones (CSV)")
    p.add_argument("detector", help="a detector.safetensors written by `isomax calibrate`")
    p.add_argument("paths", nargs="+", help="image files or folders (searched recursively)")
    p.add_argument("--output", help="CSV file (default: standard output)")
    p.add_argument(
        "--on-error", type=_on_error, default="skip", metavar="{skip,fail}", help=ON_ERROR_HELP
    )
    p.add_argument("--batch-size", type=_positive_int, default=256, help="images per batch")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    p.set_defaults(func=evaluation.cmd_detect)

    p = sub.add_parser(
        "finetune",
        help="start from trained weights, swap the classifier for an isomax head, fine-tune",
        description="Fine-tune a trained classifier (a weights file, or an isomax checkpoint) "
        "with an IsoMax-family head through the training engine; with --baseline the same "
        "weights are also fine-tuned with SoftMax, and --ood evaluates both in one table.",
        epilog="example: isomax finetune --pretrained resnet20-12fca82f.th --normalize imagenet "
        "--dataset cifar10_jpg.tar.xz --loss isomax --epochs 2 --baseline "
        "--ood tinyimagenet_val10k.tar.xz,mnist --output-dir runs/ft",
    )
    p.add_argument(
        "--checkpoint",
        help="start from an isomax checkpoint, e.g. a SoftMax run, instead of --pretrained "
        "(default: none)",
    )
    p.add_argument(
        "--baseline",
        action="store_true",
        help="also fine-tune the same weights with SoftMax, in OUTPUT_DIR/baseline-softmax "
        "(default: off)",
    )
    p.add_argument(
        "--ood",
        type=_csv_list,
        help="evaluate against these OOD sets afterwards (default: no evaluation)",
    )
    p.add_argument(
        "--max-ood",
        type=_positive_int,
        help="evaluate on at most N inputs of each OOD set (default: all)",
    )
    p.add_argument("--posthoc", type=_csv_list, help=POSTHOC_HELP)
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace runs already in --output-dir (default: off; such a folder is refused)",
    )
    _add_train_options(
        p,
        defaults={
            "preset": "finetune",
            "model": "read from the weights file",
            "dataset": "the --checkpoint's own, when it is a registry name",
            "loss": "isomaxplus",
        },
    )
    p.add_argument(
        "--output-dir",
        default="runs/finetune",
        help="checkpoints and evaluation (default: %(default)s)",
    )
    p.set_defaults(func=training.cmd_finetune)

    p = sub.add_parser(
        "list",
        help="list datasets, OOD sets, models, losses, scores, post-hoc detectors and presets",
    )

    p.set_defaults(func=listing.cmd_list)
    for name, command in sub.choices.items():
        command.formatter_class = _HelpFormatter
        if name in EXAMPLES:
            command.epilog = "examples:\n" + "\n".join(f"  {e}" for e in EXAMPLES[name])
    return parser
