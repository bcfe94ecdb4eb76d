"""Errors that reach the user, each with the exit code it maps to.

    HalfopenError            exit 3: could not check
     +-- UsageError          exit 64: a bad word on the command line
     +-- NamespaceError      exit 64: no such network namespace
     +-- NotPermitted        exit 3: the kernel refused (EPERM/EACCES)

Exit codes follow the Nagios plugin convention (0 ok, 1 warning, 2 critical,
3 unknown) plus 64 (EX_USAGE from sysexits.h) for usage errors.
"""

EXIT_OK = 0
EXIT_WARNING = 1
EXIT_CRITICAL = 2
EXIT_UNKNOWN = 3
EXIT_USAGE = 64


class HalfopenError(Exception):
    """An error with one line for the user and an exit code."""

    exit_code = EXIT_UNKNOWN


class UsageError(HalfopenError):
    exit_code = EXIT_USAGE


class NamespaceError(UsageError):
    pass


class NotPermitted(HalfopenError):
    pass
