"""PNG figures for the ``compare`` report: score histograms, ROC curves, reliability, training.

Every function validates its inputs, draws one figure and writes it to ``path`` (a ``.png``;
missing folders are created) atomically: a temporary file in the same folder, then
:func:`os.replace`. It returns ``path`` as a :class:`~pathlib.Path`. Scores are 1-D
``numpy.ndarray`` or ``torch.Tensor`` (any real dtype, any device), higher = more
in-distribution.

matplotlib is an optional dependency (``pip install 'isomax[full]'``) imported on first use. The
figures are built from :class:`matplotlib.figure.Figure` with the Agg canvas directly, never
through ``pyplot``: the user's backend, rcParams and pyplot figure list are left untouched, and
each call owns its figure, so calls from different threads share no figure state.

Methods always get the same colour and display name: ``softmax`` (SoftMax), ``isomax``
(IsoMax), ``isomaxplus`` (IsoMax+, also spelt ``isomax+``), ``dismax`` (DisMax), in that order;
other names keep their spelling and take the next colours, after the known methods.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ._names import find_name
from .errors import InputError
from .metrics import auroc, roc_curve

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "plot_reliability",
    "plot_roc_curves",
    "plot_score_histograms",
    "plot_training_curves",
]

ArrayLike = np.ndarray | torch.Tensor | Sequence[float]

#: Resolution of every PNG written here.
DPI = 110

#: Canonical method keys, their display names and colours (matplotlib's tab10 order).
_KNOWN: dict[str, tuple[str, str]] = {
    "softmax": ("SoftMax", "#1f77b4"),
    "isomax": ("IsoMax", "#ff7f0e"),
    "isomaxplus": ("IsoMax+", "#2ca02c"),
    "dismax": ("DisMax", "#d62728"),
}
#: Colours for methods outside :data:`_KNOWN`, in order of appearance (then cycled).
_EXTRA_COLOURS = ("#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#393b79", "#637939")
#: Colour of the OOD histogram (the ID one takes the method's colour).
_OOD_COLOUR = "#4d4d4d"

_HIST_PERCENTILES = (0.5, 99.5)
_TPR_LINE = 0.95


# --------------------------------------------------------------------------------------------
# matplotlib, colours, saving
# --------------------------------------------------------------------------------------------


def _new_figure(width: float, height: float, layout: str = "tight") -> Figure:
    """A Figure bound to its own Agg canvas (no pyplot, no global backend change)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "isomax.plots needs matplotlib, which is not installed: pip install 'isomax[full]'"
        ) from exc
    fig = Figure(figsize=(width, height), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _styles(names: Sequence[str], arg: str) -> list[tuple[str, str, str]]:
    """``(key, display name, colour)`` per method, known methods first in canonical order."""
    seen: dict[str, str] = {}
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"{arg} keys must be method names (str), got {name!r}")
        canon = find_name(name, _KNOWN) or name
        if canon in seen:
            raise InputError(f"{arg} has keys {seen[canon]!r} and {name!r} for the same method")
        seen[canon] = name
    known = [(seen[k], *_KNOWN[k]) for k in _KNOWN if k in seen]
    unknown = [n for k, n in seen.items() if k not in _KNOWN]
    extra = [(n, n, _EXTRA_COLOURS[i % len(_EXTRA_COLOURS)]) for i, n in enumerate(unknown)]
    return known + extra


def _label_panel(
    ax: Any, title: str, xlabel: str, ylabel: str, /, grid: str = "major", **legend: Any
) -> None:
    """Title, axis labels, legend (font size 8, ``legend`` options) and a light grid: the
    furniture of every panel."""
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, **legend)
    ax.grid(alpha=0.25, which=grid)


def _check_path(path: str | os.PathLike[str]) -> Path:
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    out = Path(path)
    if out.suffix.lower() != ".png":
        raise InputError(f"path must end in .png, got {str(out)!r}")
    return out


def _save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as PNG to a temporary file next to ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
            fd = os.open(tmp, flags, 0o666)  # the umask applies, as for a plain open()
        except FileExistsError:
            continue
        break
    else:  # pragma: no cover - 100 collisions of 48 random bits
        raise FileExistsError(f"could not create a temporary file next to {path}")
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format="png", dpi=DPI)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


# --------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------


def _as_float_array(x: Any, name: str, none_is_nan: bool = False) -> np.ndarray:
    """Return ``x`` as a float64 NumPy array (no validation of shape or values).

    With ``none_is_nan``, ``None`` items of a list or tuple (JSON's null) become NaN.
    """
    if isinstance(x, torch.Tensor):
        if x.dtype == torch.bool or x.is_complex():
            raise TypeError(f"{name} must hold real numbers, got a tensor of dtype {x.dtype}")
        return x.detach().to("cpu", torch.float64).numpy()
    if isinstance(x, str | bytes):
        raise TypeError(f"{name} must be an array of numbers, got {type(x).__name__}")
    if none_is_nan and isinstance(x, list | tuple):
        x = [math.nan if v is None else v for v in x]
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array of numbers: {exc}") from None
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def _check_scores_1d(x: Any, name: str) -> np.ndarray:
    arr = _as_float_array(x, name)
    if arr.ndim != 1:
        raise InputError(f"{name} must be 1-D, got shape {tuple(arr.shape)}")
    if arr.size == 0:
        raise InputError(f"{name} is empty")
    bad = ~np.isfinite(arr)
    if bad.any():
        n_nan = int(np.isnan(arr).sum())
        raise InputError(
            f"{name} must be finite, found {n_nan} NaN and {int(bad.sum()) - n_nan} infinite "
            f"value(s) among {arr.size}"
        )
    return arr


def _check_mapping(x: Any, name: str) -> Mapping[Any, Any]:
    if not isinstance(x, Mapping):
        raise TypeError(f"{name} must be a mapping, got {type(x).__name__}")
    if len(x) == 0:
        raise InputError(f"{name} is empty: expected at least one entry")
    return x


def _is_seed_list(x: Any) -> bool:
    """One array per seed (a list or tuple of arrays) rather than one array of scores."""
    return (
        isinstance(x, list | tuple)
        and len(x) > 0
        and all(isinstance(v, np.ndarray | torch.Tensor | list | tuple) for v in x)
    )


def _check_runs(x: Any, name: str) -> list[np.ndarray]:
    """One score array, or one per seed: a list of 1-D arrays."""
    if _is_seed_list(x):
        return [_check_scores_1d(v, f"{name}[{i}]") for i, v in enumerate(x)]
    return [_check_scores_1d(x, name)]


def _check_id_ood(
    id_scores: Any, ood_scores: Any
) -> tuple[
    list[tuple[str, str, str]],
    list[str],
    dict[str, list[np.ndarray]],
    dict[tuple[str, str], list[np.ndarray]],
]:
    """Validate the score mappings; return styles, OOD names and the arrays (one per seed)."""
    _check_mapping(id_scores, "id_scores")
    _check_mapping(ood_scores, "ood_scores")
    styles = _styles(list(id_scores), "id_scores")
    if set(id_scores) != set(ood_scores):
        only_id = sorted(map(str, set(id_scores) - set(ood_scores)))
        only_ood = sorted(map(str, set(ood_scores) - set(id_scores)))
        raise InputError(
            "id_scores and ood_scores must have the same method keys; "
            f"only in id_scores: {only_id}, only in ood_scores: {only_ood}"
        )
    ood_names: list[str] | None = None
    ids: dict[str, list[np.ndarray]] = {}
    oods: dict[tuple[str, str], list[np.ndarray]] = {}
    for method, _, _ in styles:
        ids[method] = _check_runs(id_scores[method], f"id_scores[{method!r}]")
        sets = _check_mapping(ood_scores[method], f"ood_scores[{method!r}]")
        for ood in sets:
            if not isinstance(ood, str):
                raise TypeError(f"ood_scores[{method!r}] keys must be OOD set names (str)")
        if ood_names is None:
            ood_names = list(sets)
        elif set(sets) != set(ood_names):
            raise InputError(
                f"ood_scores[{method!r}] has OOD sets {sorted(sets)}, but "
                f"ood_scores[{styles[0][0]!r}] has {sorted(ood_names)}: every method needs "
                "the same OOD sets"
            )
        for ood in ood_names:
            runs = _check_runs(sets[ood], f"ood_scores[{method!r}][{ood!r}]")
            if len(runs) != len(ids[method]):
                raise InputError(
                    f"ood_scores[{method!r}][{ood!r}] has {len(runs)} seed(s), "
                    f"id_scores[{method!r}] has {len(ids[method])}"
                )
            oods[method, ood] = runs
    assert ood_names is not None
    return styles, ood_names, ids, oods


def _auroc_text(ids: list[np.ndarray], oods: list[np.ndarray]) -> str:
    """AUROC of one seed, or mean +- std over seeds (as the report's tables)."""
    values = [auroc(a, b) for a, b in zip(ids, oods)]
    if len(values) == 1:
        return f"AUROC {values[0]:.2%}"
    return (
        f"AUROC {100 * np.mean(values):.1f} ± {100 * np.std(values, ddof=1):.1f}%, "
        f"{len(values)} seeds"
    )


def _hist_edges(pooled: np.ndarray) -> np.ndarray:
    """Shared bin edges over the 0.5-99.5 percentiles of ``pooled`` (a small span if constant)."""
    lo, hi = (float(v) for v in np.percentile(pooled, _HIST_PERCENTILES))
    if not hi - lo > 1e-9 * max(1.0, abs(lo), abs(hi)):
        centre = 0.5 * (lo + hi)
        pad = 0.05 * max(1.0, abs(centre))
        lo, hi = centre - pad, centre + pad
    n_bins = int(np.clip(np.sqrt(pooled.size), 10, 60))
    return np.linspace(lo, hi, n_bins + 1)


def _grid(n: int, max_cols: int) -> tuple[int, int]:
    """Rows and columns for ``n`` panels: the column count in ``[2, max_cols]`` (or ``n``) that
    leaves the fewest empty cells, preferring more columns."""
    if n <= max_cols:
        return 1, max(n, 1)
    cols = min(range(max_cols, 1, -1), key=lambda c: (-n % c, -c))
    return math.ceil(n / cols), cols


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def plot_score_histograms(
    id_scores: Mapping[str, ArrayLike],
    ood_scores: Mapping[str, Mapping[str, ArrayLike]],
    path: str | os.PathLike[str],
    score_names: Mapping[str, str] | None = None,
) -> Path:
    """Density histograms of ID vs OOD scores: one row per method, one column per OOD set.

    ``id_scores`` maps each method to its ID scores and ``ood_scores`` maps the same methods to
    ``{ood_set: scores}`` (the same OOD sets for every method). Each panel shares its bins
    between ID and OOD, spanning the 0.5-99.5 percentiles of the pooled scores (values outside
    are counted in the edge bins), and shows the AUROC (ID positive, ties 1/2).
    ``score_names`` optionally names the score used per method (e.g. ``{"dismax": "mmles"}``);
    it then appears in the panel titles and x labels.
    """
    styles, ood_names, ids, oods = _check_id_ood(id_scores, ood_scores)
    names: dict[str, str] = {}
    if score_names is not None:
        if not isinstance(score_names, Mapping):
            raise TypeError(f"score_names must be a mapping, got {type(score_names).__name__}")
        unknown = sorted(map(str, set(score_names) - set(ids)))
        if unknown:
            raise InputError(f"score_names has methods not in id_scores: {unknown}")
        for method, score in score_names.items():
            if not isinstance(score, str):
                raise TypeError(f"score_names[{method!r}] must be a str, got {score!r}")
            names[method] = score
    out = _check_path(path)

    rows, cols = len(styles), len(ood_names)
    fig = _new_figure(max(4.2 * cols, 6.0), 3.1 * rows + 0.6)
    lo, hi = _HIST_PERCENTILES
    seeds = max(len(v) for v in ids.values())
    pooled = f", scores of {seeds} seeds pooled" if seeds > 1 else ""
    fig.suptitle(
        f"ID vs OOD score distributions (higher = more ID{pooled})\n"
        f"bins: {lo:g}-{hi:g} percentiles per panel, tails in the edge bins",
        fontsize=11,
    )
    for r, (method, display, colour) in enumerate(styles):
        score = names.get(method)
        label = f"{display} ({score})" if score else display
        for c, ood in enumerate(ood_names):
            ax = fig.add_subplot(rows, cols, r * cols + c + 1)
            x_id, x_ood = np.concatenate(ids[method]), np.concatenate(oods[method, ood])
            edges = _hist_edges(np.concatenate([x_id, x_ood]))
            for x, colour_, name in ((x_id, colour, "ID"), (x_ood, _OOD_COLOUR, ood)):
                dens, _ = np.histogram(np.clip(x, edges[0], edges[-1]), edges, density=True)
                ax.stairs(dens, edges, fill=True, color=colour_, alpha=0.35)
                ax.stairs(dens, edges, color=colour_, linewidth=1.2, label=f"{name} (n={x.size:,})")
            _label_panel(
                ax,
                f"{label} vs {ood}",
                f"{score} score" if score else "score",
                "density",
                title=_auroc_text(ids[method], oods[method, ood]),
                loc="best",
                title_fontsize=9,
            )
    return _save(fig, out)


def plot_roc_curves(
    id_scores: Mapping[str, ArrayLike],
    ood_scores: Mapping[str, Mapping[str, ArrayLike]],
    path: str | os.PathLike[str],
) -> Path:
    """ROC curves, one panel per OOD set and one curve per method (ID positive).

    x = FPR (share of OOD accepted), y = TPR (share of ID accepted), over every unique score
    as threshold (``score >= t`` is accepted), from (0, 0) to (1, 1). The legend gives each
    method's AUROC; a dotted line marks TPR = 95%. Inputs as in :func:`plot_score_histograms`.
    """
    styles, ood_names, ids, oods = _check_id_ood(id_scores, ood_scores)
    out = _check_path(path)

    rows, cols = _grid(len(ood_names), 4)
    fig = _new_figure(4.6 * cols, 4.6 * rows + 0.3, layout="constrained")  # square panels
    seeds = max(len(v) for v in ids.values())
    fig.suptitle(
        "ROC curves, ID positive (higher score = more in-distribution)"
        + (f"; one curve per seed ({seeds} seeds)" if seeds > 1 else ""),
        fontsize=11,
    )
    for i, ood in enumerate(ood_names):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="chance")
        ax.axhline(_TPR_LINE, color="0.3", linestyle=":", linewidth=1, label="TPR = 95%")
        for method, display, colour in styles:
            runs = list(zip(ids[method], oods[method, ood]))
            label = f"{display} ({_auroc_text(ids[method], oods[method, ood])})"
            for k, (x_id, x_ood) in enumerate(runs):
                fpr, tpr, _ = roc_curve(x_id, x_ood)
                width = 1.6 if len(runs) == 1 else 1.1
                ax.plot(fpr, tpr, color=colour, linewidth=width, label=label if k == 0 else None)
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
        ax.set_box_aspect(1)
        _label_panel(
            ax,
            f"ID vs {ood}",
            "FPR (share of OOD accepted)",
            "TPR (share of ID accepted)",
            loc="lower right",
        )
    return _save(fig, out)


def _check_diagram(
    diagram: Any, name: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validate one reliability diagram; return edges, confidence, accuracy, counts."""
    _check_mapping(diagram, name)
    missing = [k for k in ("edges", "confidence", "accuracy", "counts") if k not in diagram]
    if missing:
        raise InputError(f"{name} lacks the key(s) {missing}")
    edges = _as_float_array(diagram["edges"], f"{name}['edges']", none_is_nan=True)
    if edges.ndim != 1 or edges.size < 2:
        raise InputError(f"{name}['edges'] must be 1-D with n_bins + 1 >= 2 values")
    if not np.isfinite(edges).all() or (np.diff(edges) <= 0).any():
        raise InputError(f"{name}['edges'] must be finite and strictly increasing")
    if edges[0] < 0 or edges[-1] > 1:
        raise InputError(f"{name}['edges'] must lie in [0, 1], got [{edges[0]}, {edges[-1]}]")
    n_bins = edges.size - 1
    parts = []
    for key in ("confidence", "accuracy", "counts"):
        arr = _as_float_array(diagram[key], f"{name}[{key!r}]", none_is_nan=True)
        if arr.shape != (n_bins,):
            raise InputError(
                f"{name}[{key!r}] must have shape ({n_bins},) to match the {n_bins + 1} edges, "
                f"got {tuple(arr.shape)}"
            )
        parts.append(arr)
    conf, acc, counts = parts
    if not np.isfinite(counts).all() or (counts < 0).any():
        raise InputError(f"{name}['counts'] must be finite and >= 0")
    if counts.sum() <= 0:
        raise InputError(f"{name}['counts'] adds up to 0: the diagram holds no samples")
    full = counts > 0
    for key, arr in (("confidence", conf), ("accuracy", acc)):
        v = arr[full]
        if not np.isfinite(v).all() or (v < 0).any() or (v > 1).any():
            raise InputError(f"{name}[{key!r}] must lie in [0, 1] for every non-empty bin")
    return edges, conf, acc, counts


def plot_reliability(
    diagrams: Mapping[str, Mapping[str, Sequence[float]]],
    path: str | os.PathLike[str],
) -> Path:
    """Reliability diagrams, one panel per method, with ECE in each title.

    Each diagram (e.g. from :func:`isomax.metrics.reliability_diagram`) has ``"edges"``
    (n_bins + 1 floats in [0, 1]) and per bin ``"confidence"``, ``"accuracy"`` and ``"counts"``;
    empty bins (count 0, values NaN, None or 0) are skipped; other keys are ignored. The ECE is
    recomputed from the bins: sum of ``counts / N * |accuracy - confidence|``.
    """
    _check_mapping(diagrams, "diagrams")
    styles = _styles(list(diagrams), "diagrams")
    checked = {m: _check_diagram(diagrams[m], f"diagrams[{m!r}]") for m, _, _ in styles}
    out = _check_path(path)

    rows, cols = _grid(len(styles), 4)
    fig = _new_figure(3.9 * cols, 4.1 * rows + 0.3)
    fig.suptitle("Reliability diagrams (accuracy vs confidence per bin)", fontsize=11)
    for i, (method, display, colour) in enumerate(styles):
        edges, conf, acc, counts = checked[method]
        full = counts > 0
        ece = float(np.sum(counts[full] / counts.sum() * np.abs(acc[full] - conf[full])))
        left, width = edges[:-1][full], np.diff(edges)[full]
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.bar(
            left,
            acc[full],
            width=width,
            align="edge",
            color=colour,
            alpha=0.85,
            edgecolor="black",
            linewidth=0.6,
            label="accuracy",
        )
        ax.bar(  # outline and hatch only: the accuracy bars stay visible through the gap
            left,
            np.abs(conf[full] - acc[full]),
            width=width,
            bottom=np.minimum(conf[full], acc[full]),
            align="edge",
            fill=False,
            hatch="//",
            edgecolor="#a01010",
            linewidth=0.8,
            label="gap to confidence",
        )
        ax.plot(
            [0, 1], [0, 1], color="0.3", linestyle="--", linewidth=1, label="perfect calibration"
        )
        ax.set_xlim(edges[0], edges[-1])
        ax.set_ylim(0, 1)
        _label_panel(
            ax,
            f"{display}: ECE {ece:.2%}",
            "confidence (max probability)",
            "accuracy",
            loc="upper left",
        )
    return _save(fig, out)


def _check_history(rows: Any, name: str) -> dict[str, np.ndarray]:
    """Validate one training history; return epoch, train_loss, train_acc, val_acc arrays."""
    if isinstance(rows, str | bytes | Mapping) or not isinstance(rows, Sequence):
        raise TypeError(f"{name} must be a sequence of per-epoch dicts, got {type(rows).__name__}")
    if len(rows) == 0:
        raise InputError(f"{name} is empty: expected at least one epoch")
    cols: dict[str, list[float]] = {k: [] for k in ("epoch", "train_loss", "train_acc", "val_acc")}
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise TypeError(f"{name}[{i}] must be a dict, got {type(row).__name__}")
        missing = [k for k in ("epoch", "train_loss", "train_acc") if k not in row]
        if missing:
            raise InputError(f"{name}[{i}] lacks the key(s) {missing}")
        for key, values in cols.items():
            value = row.get(key)
            if value is None:  # missing, or JSON's null for NaN
                value = math.nan
            try:
                values.append(float(value))
            except (TypeError, ValueError):
                raise TypeError(f"{name}[{i}][{key!r}] must be a number, got {value!r}") from None
    out = {k: np.asarray(v, dtype=np.float64) for k, v in cols.items()}
    if not np.isfinite(out["epoch"]).all():
        raise InputError(f"{name}: every 'epoch' must be a finite number")
    return out


def plot_training_curves(
    histories: Mapping[str, Sequence[Mapping[str, float]]],
    path: str | os.PathLike[str],
) -> Path:
    """Training loss (log scale) and accuracy (train dashed, validation solid) per method.

    ``histories`` maps each method to its per-epoch rows with keys ``"epoch"``,
    ``"train_loss"``, ``"train_acc"`` and ``"val_acc"`` (NaN, None or missing when not
    measured); other keys are ignored.
    Non-finite values are skipped: each line joins the epochs that hold a number. The loss axis
    falls back to a linear scale when no loss is positive.
    """
    _check_mapping(histories, "histories")
    styles = _styles(list(histories), "histories")
    data = {m: _check_history(histories[m], f"histories[{m!r}]") for m, _, _ in styles}
    out = _check_path(path)

    fig = _new_figure(11.0, 4.4)
    from matplotlib.lines import Line2D  # matplotlib is importable: _new_figure checked it
    from matplotlib.ticker import MaxNLocator

    fig.suptitle("Training curves", fontsize=11)
    ax_loss = fig.add_subplot(1, 2, 1)
    ax_acc = fig.add_subplot(1, 2, 2)
    any_positive = False
    handles = []
    for method, display, colour in styles:
        h = data[method]
        order = np.argsort(h["epoch"], kind="stable")
        epoch = h["epoch"][order]
        marker = "o" if epoch.size <= 30 else None
        kw: dict[str, Any] = {"color": colour, "marker": marker, "markersize": 3.5}
        loss = h["train_loss"][order]
        any_positive |= bool(((loss > 0) & np.isfinite(loss)).any())
        for ax, key, style in (
            (ax_loss, "train_loss", "-"),
            (ax_acc, "train_acc", "--"),
            (ax_acc, "val_acc", "-"),
        ):
            y = h[key][order]
            keep = np.isfinite(y)  # unmeasured epochs: connect the measured ones
            if keep.any():
                ax.plot(epoch[keep], y[keep], linestyle=style, **kw)
        handles.append(Line2D([], [], color=colour, label=display))
    if any_positive:
        ax_loss.set_yscale("log")
    loss_label = "loss" + (" (log scale)" if any_positive else "")
    _label_panel(ax_loss, "Training loss", "epoch", loss_label, grid="both", handles=list(handles))
    handles += [
        Line2D([], [], color="black", linestyle="--", label="train"),
        Line2D([], [], color="black", linestyle="-", label="validation"),
    ]
    _label_panel(ax_acc, "Accuracy", "epoch", "accuracy", handles=handles)
    first = min(float(d["epoch"].min()) for d in data.values())
    last = max(float(d["epoch"].max()) for d in data.values())
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if last - first < 1:  # a single epoch: show whole epochs around it
            ax.set_xlim(first - 1, last + 1)
    return _save(fig, out)
