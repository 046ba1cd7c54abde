"""Deploy target `aiosmtpd`: make a running certkit smtpd serve the new certificate.

Options (``ctx.options``): ``pid_file`` (required; `--pid-file F`) and
``timeout`` (seconds to wait for the acknowledgement, default 10).

Works with `certkit smtpd --pid-file F` and with any aiosmtpd application
that uses :class:`certkit.smtpd.tlsreload.ReloadableTLS` with
:func:`certkit.smtpd.tlsreload.install_reload_signal` (``pid_file=F``). The server
is sent SIGHUP; it builds a new TLS context for new connections and rewrites
``F.status`` with the sha256 of what it now serves. The deploy succeeds only
when that acknowledgement names the lineage's live certificate; a server
that could not load it keeps its old certificate and says why, and the
deploy fails with that reason (the pipeline then rolls back).

No server configuration changes, so there is no rollback(ctx): re-running
deploy(ctx) with the previous version live restores the previous certificate.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from certkit.deploy.base import DeployContext
from certkit.errors import OperationError, UsageError, VerificationError
from certkit.polling import Backoff
from certkit.smtpd import tlsreload

DEFAULT_TIMEOUT = 10.0


def deploy(ctx: DeployContext) -> None:
    """Signal the server behind ``ctx.options["pid_file"]`` and confirm it serves the live cert."""
    pid_file = ctx.options.get("pid_file")
    if not pid_file:
        raise UsageError("the aiosmtpd target needs the server's pid file",
                         "add --pid-file F (the file given to certkit smtpd --pid-file)")
    if not hasattr(signal, "SIGHUP"):
        raise UsageError("the aiosmtpd target reloads through SIGHUP, which this system lacks",
                         "restart the server to load the new certificate")
    timeout = float(ctx.options.get("timeout", DEFAULT_TIMEOUT))
    expected = _live_sha256(ctx)
    pid = read_pid(pid_file)
    before = tlsreload.read_status(pid_file)
    if before is None or before.get("pid") != pid:
        raise OperationError(
            f"{tlsreload.status_path(pid_file)} is missing or belongs to another process, so certkit "
            f"cannot confirm a reload of pid {pid}",
            "run certkit smtpd with --pid-file, or call certkit.smtpd.tlsreload.install_reload_signal(pid_file=...) "
            "in your aiosmtpd application")
    _check_alive(pid, pid_file, before)
    os.kill(pid, signal.SIGHUP)
    status = wait_for_reload(pid_file, pid, int(before.get("reloads", 0)), timeout)
    if status.get("error"):
        raise OperationError(
            f"the smtpd (pid {pid}) could not load the new certificate and keeps serving the old one: "
            f"{status['error']}",
            "fix the lineage's files, then run certkit deploy again")
    if status.get("sha256") != expected:
        raise VerificationError(
            f"the smtpd (pid {pid}) reloaded but serves sha256 {str(status.get('sha256'))[:16]}..., "
            f"not lineage {ctx.name}'s live certificate {expected[:16]}...",
            f"start it with --cert {ctx.name} (it serves {status.get('certfile')})")
    ctx.echo(f"aiosmtpd: pid {pid} serves sha256 {expected[:16]}... (until {status.get('not_after')}) "
             f"to new connections")


def read_pid(pid_file: str | Path) -> int:
    """The pid in ``pid_file``; UsageError when missing or malformed."""
    try:
        text = Path(pid_file).read_text().strip()
    except FileNotFoundError as exc:
        raise UsageError(f"pid file {pid_file} does not exist",
                         "is certkit smtpd running with this --pid-file?") from exc
    except OSError as exc:
        raise UsageError(f"cannot read pid file {pid_file}: {exc.strerror}", "check its permissions") from exc
    except UnicodeDecodeError:
        text = ""  # not text at all: reported below like any other content
    if not text.isdigit() or int(text) <= 1:
        raise UsageError(f"pid file {pid_file} does not hold a process id", "point --pid-file at the server's")
    return int(text)


def wait_for_reload(pid_file: str | Path, pid: int, reloads_before: int, timeout: float) -> dict[str, Any]:
    """Poll the status file until the server acknowledges a reload after ``reloads_before``."""
    backoff = Backoff(deadline=time.monotonic() + timeout, first=0.005, growth=2.0, cap=0.1)
    while True:
        status = tlsreload.read_status(pid_file)
        if status and status.get("pid") == pid and int(status.get("reloads", 0)) > reloads_before:
            return status
        if not backoff.wait():
            raise OperationError(
                f"the smtpd (pid {pid}) did not acknowledge the reload within {timeout:g} s",
                f"check its log; {tlsreload.status_path(pid_file)} should change after SIGHUP")


def _live_sha256(ctx: DeployContext) -> str:
    from certkit import x509 as cx

    try:
        pem = Path(ctx.paths.cert).read_bytes()
    except OSError as exc:
        raise OperationError(f"cannot read {ctx.paths.cert}: {exc.strerror}", "check the state directory") from exc
    return cx.sha256_fingerprint(cx.load_chain(pem)[0])


def _check_alive(pid: int, pid_file: str | Path, status: dict[str, Any]) -> None:
    """Refuse to signal a dead pid, or (Linux) a process newer than the status file (pid reuse)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise OperationError(f"no process {pid} (from {pid_file}) is running",
                             "start certkit smtpd again, or drop the aiosmtpd target") from None
    except PermissionError:
        raise OperationError(f"not allowed to signal process {pid} (from {pid_file})",
                             "run certkit deploy as the server's user or root") from None
    started = _process_start(pid)
    if started is None:
        return
    import datetime as dt

    try:
        written = dt.datetime.fromisoformat(str(status.get("time"))).timestamp()
    except ValueError:
        return
    # A status written before the process started belongs to a dead server whose
    # pid was reused: signalling would hit an unrelated program (SIGHUP kills by default).
    if written < started - 2:
        raise OperationError(f"process {pid} started after {pid_file} was written; the pid file is stale",
                             "restart certkit smtpd (it rewrites the pid file)")


def _process_start(pid: int) -> float | None:
    """Start time of ``pid`` (epoch seconds) from /proc, None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat.rpartition(")")[2].split()
        start_ticks = int(fields[19])  # field 22 of proc(5), counted after "(comm)"
        btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                     if line.startswith("btime "))
        return btime + start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None
