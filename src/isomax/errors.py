"""What went wrong: a user's mistake, or a defect in isomax.

Every check of what a caller passed in (an argument, a setting, a file, a dataset) raises
:class:`InputError` (a ``ValueError``, so ``except ValueError`` keeps working) with a message
that names what was wrong and what is expected. The command line shows such errors, and the
file-system errors that name a path the user gave, as one line with exit status 2; anything else
is a defect in isomax: the command line prints the traceback and asks for a report (exit 1).
"""

from __future__ import annotations

import errno

__all__ = ["InputError", "is_user_error"]


class InputError(ValueError):
    """A bad argument, setting, file or dataset: the message says what is expected."""


# Environment conditions the user can fix (and whose message names the path).
_USER_ERRNOS = {
    errno.ENOSPC,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.EDQUOT,
    errno.ENAMETOOLONG,
}


def is_user_error(exc: BaseException) -> bool:
    """True for a user's mistake: :class:`InputError`, a missing or unwritable path named by the
    user, a full disk, a missing optional dependency; False for anything else (a defect)."""
    from .data.errors import DownloadError
    from .engine.checkpoint import RunFolderLockedError

    if isinstance(exc, InputError | ImportError | DownloadError | RunFolderLockedError):
        return True
    if isinstance(
        exc,
        FileNotFoundError
        | FileExistsError
        | PermissionError
        | NotADirectoryError
        | IsADirectoryError,
    ):
        return True
    return isinstance(exc, OSError) and exc.errno in _USER_ERRNOS
