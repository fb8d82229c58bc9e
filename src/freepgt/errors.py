"""Errors the model raises: failed system calls, signals, and kernel bugs."""

from __future__ import annotations

import errno as _errno
import os


def syscall_error(code: int, what: str) -> OSError:
    """An ``OSError`` carrying the errno Linux returns, e.g. ``-EINVAL``."""
    return OSError(code, f"{what}: {os.strerror(code)}")


def errno_name(code: int) -> str:
    """'-EINVAL' for EINVAL."""
    return "-" + _errno.errorcode.get(code, str(code))


class Signal(Exception):
    """A fault the kernel turned into a signal for the process."""

    signame = "SIG?"

    def __init__(self, addr: int, reason: str = "") -> None:
        super().__init__(f"{self.signame} at {addr:#x}" + (f": {reason}" if reason else ""))
        #: page-aligned address of the page that faulted
        self.addr = addr
        self.reason = reason


class SegmentationFault(Signal):
    """SIGSEGV: no vma there, or the vma does not allow the access."""

    signame = "SIGSEGV"


class BusError(Signal):
    """SIGBUS: a file or shmem page at or past the object's end."""

    signame = "SIGBUS"


class KernelBug(Exception):
    """A ``BUG_ON`` (or the era's equivalent check) would have fired.

    Never corrected silently: the model stops and says which check and why.
    """

    def __init__(self, check: str, detail: str) -> None:
        super().__init__(f"kernel BUG: {check}: {detail}")
        self.check = check
        self.detail = detail
