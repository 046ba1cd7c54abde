"""The certkit exception tree.

Every error certkit reports on purpose derives from :class:`CertkitError` and
carries the process exit code the CLI uses for it:

    CertkitError                 exit 1  (base; something failed)
    +-- UsageError               exit 2  bad usage or bad input: what is wrong, how to fix it
    |   +-- NameError_           exit 2  an invalid DNS name / IP / wildcard
    |   +-- WeakKeyError         exit 2  a key size below 2048 bits without --allow-weak
    |   +-- NotFoundError        exit 2  no such lineage / file
    |   +-- NotBuiltError        exit 2  the command exists in the contract but not yet here
    +-- OperationError           exit 1  the operation failed (I/O, a tool, a server)
        +-- FileWriteError       exit 1  a file could not be written (also an OSError)
        +-- LockError            exit 1  another certkit process holds the state lock
        +-- AcmeError            exit 1  the ACME server refused or failed
        +-- HookError            exit 1  a deploy hook exited non-zero or timed out
        +-- VerificationError    exit 1  a deployed certificate was not served as expected
        +-- CheckFailed          exit 1  `certkit check` found a FAIL
        +-- HeldBack             exit 1  a DANE renewal waits until the next key's TLSA is visible

Third-party exceptions (OSError, ssl, acme, smtplib...) are translated into
this tree at one boundary per subsystem; the CLI catches CertkitError only,
so anything else reaching the top is a bug and shows its traceback.

Messages follow one shape: ``<what happened> - <what to do>``; the ``hint``
holds the second half when it is built separately.
"""

from __future__ import annotations


class CertkitError(Exception):
    """Base of every error certkit reports on purpose."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} - {self.hint}"
        return self.message


class UsageError(CertkitError):
    """Bad usage or bad input (exit 2)."""

    exit_code = 2


class NameError_(UsageError):  # noqa: N801 - trailing underscore avoids the builtin
    """A certificate name that is not a valid DNS name, wildcard or IP."""


class WeakKeyError(UsageError):
    """A key below 2048 bits was asked for without --allow-weak."""


class NotFoundError(UsageError):
    """A lineage, file or version that does not exist."""


class NotBuiltError(UsageError):
    """A command of the contract that this build does not provide yet."""


class OperationError(CertkitError):
    """The operation was attempted and failed (exit 1)."""


class FileWriteError(OperationError, OSError):
    """A file could not be written: missing folder, permissions, disk full.

    Also an OSError (with errno/strerror/filename set), so callers that
    already handle OSError keep working.
    """


class LockError(OperationError):
    """Another certkit process is working on the same state directory."""


class AcmeError(OperationError):
    """The ACME server refused the request or could not be reached."""


class HookError(OperationError):
    """A deploy hook exited non-zero or outlived its timeout."""


class VerificationError(OperationError):
    """After deploying, the server did not serve the new certificate correctly."""


class CheckFailed(OperationError):
    """`certkit check` found at least one FAIL."""


class HeldBack(OperationError):
    """A renewal that would make a key live before its TLSA record has been visible long enough (DANE)."""
