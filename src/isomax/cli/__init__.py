"""Command line: ``isomax demo | compare | train | evaluate | calibrate | detect | list``.

A user mistake (unknown name, missing file, bad value, unwritable folder) ends with exit status
2 and one line on stderr; ``--debug`` (or ``ISOMAX_DEBUG=1``) shows the traceback instead.

The commands live in :mod:`.training`, :mod:`.comparison`, :mod:`.evaluation` and
:mod:`.listing`, the parser in :mod:`.parser`, shared option types in :mod:`.options`; what they
run is library code (:mod:`isomax.comparison`, :mod:`isomax.checkpoint_eval`, ...).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import is_user_error
from ..threads import size_threads
from .options import _overrides
from .parser import build_parser

__all__ = ["build_parser", "main"]


class _EpochFormatter(logging.Formatter):
    """The per-epoch record bare, anything else as the root logger prints it."""

    def format(self, record: logging.LogRecord) -> str:
        if _is_epoch_record(record):
            return record.getMessage()
        return f"{record.levelname} {record.name}: {record.getMessage()}"


def _is_epoch_record(record: logging.LogRecord) -> bool:
    return record.levelno == logging.INFO and "epoch %d/%d" in str(record.msg)


def _epoch_lines(terminal: bool, verbose: bool = False) -> None:
    """One line per epoch on stderr when it is not a terminal (CI logs, nohup): the trainer's
    per-epoch log record, printed bare. On a terminal the progress bars show the epochs."""
    trainer_log = logging.getLogger("isomax.engine.trainer")
    for h in list(trainer_log.handlers):
        if isinstance(h.formatter, _EpochFormatter):
            trainer_log.removeHandler(h)
    trainer_log.propagate = True
    if terminal:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_EpochFormatter())
    handler.addFilter(lambda r: verbose or r.levelno >= logging.WARNING or _is_epoch_record(r))
    trainer_log.addHandler(handler)
    trainer_log.setLevel(logging.INFO)
    trainer_log.propagate = False


# Library messages name Python arguments; on the command line the options say the same.
CLI_WORDS = (
    ("Pass download=True", "Pass --download"),
    ("pass download=True", "pass --download"),
    ("point root= at", "point --data-root at"),
    ("pass root= pointing at", "pass --data-root pointing at"),
    ("(val_split=0)", "(trained with val_split = 0)"),
    (
        "does not record its model configuration: pass the model, OODDetector.load(path, model)",
        "does not record its model configuration; make the detector with `isomax calibrate`",
    ),
    ("on_error='skip'", "--on-error skip"),
    ("replace it with overwrite=True", "replace it with --overwrite"),
    ("choose another output_dir", "choose another --output-dir"),
)


def _cli_words(message: str) -> str:
    for library, cli in CLI_WORDS:
        message = message.replace(library, cli)
    return message


def _resume_hint(argv: Sequence[str]) -> str:
    """What to run to continue an interrupted ``train`` (same options, --resume)."""
    import shlex

    kept = [a for a in argv if a not in ("--overwrite", "--resume")]
    return "continue it with: isomax " + " ".join(map(shlex.quote, [*kept, "--resume"]))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``isomax`` command; returns the exit status."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    debug = args.debug or os.environ.get("ISOMAX_DEBUG") == "1"
    if args.command in ("train", "compare", "demo") and not getattr(args, "quiet", False):
        _epoch_lines(sys.stderr.isatty(), args.verbose)
    if args.command != "list":
        size_threads()
    try:
        return int(args.func(args))
    except Exception as exc:  # KeyboardInterrupt is not an Exception: handled below
        if debug:
            raise
        if not is_user_error(exc):  # a defect in isomax: show where, ask for a report
            import traceback

            traceback.print_exc()
            print(
                f"isomax {args.command}: internal error ({type(exc).__name__}): this is a "
                "defect in isomax, not a mistake in your input; please report it with the "
                "traceback above",
                file=sys.stderr,
            )
            return 1
        message = _cli_words(" ".join(str(exc).split()) or type(exc).__name__)
        print(f"isomax {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = ""
        if args.command == "train":
            from ..engine import load_config

            try:
                out = Path(load_config(args.config, overrides=_overrides(args)).output_dir)
                if args.output_dir:
                    out = Path(args.output_dir)
            except Exception:  # the hint is a courtesy: never hide the interruption
                out = Path(args.output_dir or "runs/train")
            if (out / "checkpoint.safetensors").exists():
                hint = f"; the last checkpoint is kept, {_resume_hint(argv)}"
            else:
                hint = "; no checkpoint was written yet (start again with --overwrite)"
        print(f"isomax {args.command}: interrupted{hint}", file=sys.stderr)
        return 130
