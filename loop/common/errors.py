"""Errors a user can cause or fix. The runner prints their message as one line and exits non-zero."""


class LoopError(Exception):
    """A problem the user can fix; the message says what was wrong and how to fix it."""

    exit_code = 1


class UsageError(LoopError):
    """The command line itself is wrong (no stage, unknown stage, unknown key)."""

    exit_code = 2
