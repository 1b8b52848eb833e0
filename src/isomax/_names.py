"""How a user-given name is matched against a table of names: one rule, one error message.

The rule (:func:`fold`): case, surrounding white space and the separators ``-``, ``_`` and
spaces do not matter, and ``+`` reads ``plus``. So ``"IsoMax+"``, ``"isomax_plus"``,
``"isomax-plus"`` and ``"isomaxplus"`` are one name, as are ``"fashion_mnist"`` and
``"Fashion-MNIST"``, or ``"max-logit"`` and ``"max_logit"``. Aliases (``"noise"`` for
``"gaussian"``) are matched by the same rule. Every registry of isomax (heads, losses, models,
datasets, presets, plot styles) looks names up here, so that a spelling accepted by one is
accepted by all, and an unknown name is reported in one wording that lists the choices.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TypeVar

from .errors import InputError

__all__ = [
    "add_name",
    "find_name",
    "fold",
    "registry_key",
    "resolve_name",
    "unknown_name",
]

_T = TypeVar("_T")
_SEPARATORS = re.compile(r"[-_\s]+")


def fold(name: str) -> str:
    """The form two spellings of one name share: lower case, no ``-``/``_``/space, ``+`` ->
    ``plus`` (``"IsoMax+"`` -> ``"isomaxplus"``)."""
    return _SEPARATORS.sub("", name.lower()).replace("+", "plus")


def find_name(
    name: object, choices: Iterable[str], aliases: Mapping[str, str] | None = None
) -> str | None:
    """The entry of ``choices`` that ``name`` spells (see :func:`fold`), else None.

    ``aliases`` maps other names to entries of ``choices``; an alias whose entry is not among
    ``choices`` is ignored. A ``name`` that is not a string matches nothing.
    """
    if not isinstance(name, str):
        return None
    key = fold(name)
    by_fold = {fold(c): c for c in choices}
    if key in by_fold:
        return by_fold[key]
    for alias, target in (aliases or {}).items():
        if fold(alias) == key:
            return by_fold.get(fold(target))
    return None


def unknown_name(
    kind: str,
    name: object,
    choices: Iterable[str],
    aliases: Mapping[str, str] | None = None,
    also: str = "",
) -> InputError:
    """The error for a ``name`` that is none of ``choices``: ``unknown KIND 'NAME'; valid names:
    A, B, C``, then `` (also: ALIAS = A)`` for the aliases of listed names and ``, or ALSO``."""
    listed = list(choices)
    folded = {fold(c) for c in listed}
    other = [
        f"{a} = {t}"
        for a, t in (aliases or {}).items()
        if fold(t) in folded and fold(a) not in folded
    ]
    text = f"unknown {kind} {name!r}; valid names: {', '.join(listed)}"
    if other:
        text += f" (also: {', '.join(other)})"
    if also:
        text += f", or {also}"
    return InputError(text)


def resolve_name(
    kind: str, name: object, choices: Iterable[str], aliases: Mapping[str, str] | None = None
) -> str:
    """The entry of ``choices`` that ``name`` spells; :func:`unknown_name`'s error if none."""
    listed = list(choices)
    found = find_name(name, listed, aliases)
    if found is None:
        raise unknown_name(kind, name, listed, aliases)
    return found


def registry_key(kind: str, name: object) -> str:
    """The key a registry stores ``name`` under: stripped and lower case (a non-empty string)."""
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"a {kind} name must be a non-empty string, got {name!r}")
    return name.strip().lower()


def add_name(kind: str, table: dict[str, _T], name: str, value: _T, overwrite: bool = False) -> str:
    """Register ``value`` in ``table`` under :func:`registry_key` of ``name``; return the key.

    A name spelt like one already in ``table`` (see :func:`fold`) is that name: it is refused
    unless ``overwrite``, and then replaces it.
    """
    key = registry_key(kind, name)
    taken = find_name(key, table)
    if taken is not None:
        if not overwrite:
            raise InputError(f"{kind} {taken!r} is already registered (pass overwrite=True)")
        del table[taken]
    table[key] = value
    return key
