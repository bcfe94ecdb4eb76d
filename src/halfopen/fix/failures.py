"""Errors of the fix piece, each with the exit code it maps to.

    HalfopenError (halfopen.errors)
     +-- UsageError                exit 64: bad id, value or pid; nothing changed
     +-- ProcessGone               exit 3: ESRCH, the process exited
     +-- AccessDenied              exit 3: EPERM/EACCES, with the rule that refused
     +-- NotSupported              exit 3: the kernel lacks the call or option
     +-- PartialFailure            exit 2: some changes were made, then one failed
"""

from __future__ import annotations

from ..errors import EXIT_CRITICAL, HalfopenError


class ProcessGone(HalfopenError):
    def __init__(self, pid: int, why: str = "") -> None:
        super().__init__(why or f"process {pid} is gone (ESRCH)")
        self.pid = pid


class AccessDenied(HalfopenError):
    pass


class NotSupported(HalfopenError):
    pass


class PartialFailure(HalfopenError):
    """A change failed after others were made; the journal holds those."""

    exit_code = EXIT_CRITICAL
