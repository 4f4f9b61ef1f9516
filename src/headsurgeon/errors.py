"""User-facing errors.

Anything a user can cause (a missing path, a bad threshold, an offline machine) is raised as a
:class:`HeadsurgeonError` whose message is one line that names the problem *and* the fix.
The CLI turns these into ``error: <message>`` and exit code 2, with no traceback; library
callers get an ordinary exception they can catch. :func:`from_os_error` turns the operating
system's refusals (full disk, read-only place, a folder where a file should be) into such an
error; the atomic writers and the CLI's last-resort handler both use it.
"""

from __future__ import annotations

import errno


class HeadsurgeonError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class UnsupportedArchitectureError(HeadsurgeonError):
    """The model's family has no head-layout adapter."""


class CaptureError(HeadsurgeonError):
    """Attention weights could not be captured, or failed their sanity checks."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`HeadsurgeonError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise HeadsurgeonError(message)


class DiskFullError(HeadsurgeonError):
    """The device ran out of space: not the user's input, so exit code 1."""

    exit_code = 1


_REASONS = {errno.ENOSPC: "no space left on the device", errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
            errno.EPERM: "permission denied", errno.ENOTDIR: "part of the path is a file, not a folder",
            errno.EEXIST: "part of the path is a file, not a folder", errno.ENAMETOOLONG: "name too long"}


def os_reason(exc: OSError) -> str:
    """The operating system's refusal in a few lower-case words."""
    return _REASONS.get(getattr(exc, "errno", None)) or (getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)


def from_os_error(exc: BaseException, path=None) -> HeadsurgeonError:
    """One line for an ``OSError`` (or a safetensors/torch error wrapping one) met while writing.

    ``path`` is what was being written (default: the error's own file name). A full disk is a
    :class:`DiskFullError` (exit 1); every other refusal is about the path the user chose (exit 2).
    """
    code = getattr(exc, "errno", None)
    text = str(exc)
    if code is None:  # safetensors and others wrap the OS error in their own text
        lowered = text.lower()
        if "no space left" in lowered or "storagefull" in lowered or "os error 28" in lowered or "code: 28" in lowered:
            code = errno.ENOSPC
        elif "read-only file system" in lowered or "code: 30" in lowered:
            code = errno.EROFS
        elif "permission denied" in lowered or "code: 13" in lowered:
            code = errno.EACCES
    where = path if path is not None else (getattr(exc, "filename", None) or "the output")
    if code in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(f"no space left on the device while writing {where}; free some space or choose --out on another disk "
                             "(files written before are intact)")
    if code == errno.EROFS:
        return HeadsurgeonError(f"cannot write {where}: the file system is read-only; choose a writable --out")
    if code in (errno.EACCES, errno.EPERM):
        return HeadsurgeonError(f"cannot write {where}: permission denied; choose a writable --out")
    if code == errno.EISDIR:
        return HeadsurgeonError(f"{where} is a directory, not a file; pass a file path (e.g. {where}/plan.json)")
    if code == errno.ENOTDIR:
        return HeadsurgeonError(f"cannot write {where}: part of that path is a file, not a folder; choose another --out")
    if code == errno.EEXIST:
        return HeadsurgeonError(f"cannot write {where}: part of that path is a file, not a folder; choose another --out")
    if code == errno.ENAMETOOLONG:
        return HeadsurgeonError(f"cannot write {where}: the name is too long; choose a shorter --out")
    if code == errno.ENOENT:
        return HeadsurgeonError(f"{where} does not exist; check the path")
    reason = getattr(exc, "strerror", None) or (text.splitlines()[0] if text else type(exc).__name__)
    return HeadsurgeonError(f"cannot write {where} ({reason}); choose another --out")
