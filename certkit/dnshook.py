"""The DNS hook protocol: one user program that adds and removes DNS records, for dns-01 and DANE.

The hook runs once per record, with the contract's environment:
``CERTKIT_DNS_ACTION`` (present/cleanup), ``CERTKIT_DNS_NAME`` (the owner
name, e.g. ``_acme-challenge.example.com`` or ``_25._tcp.mx.example.com``),
``CERTKIT_DNS_VALUE`` (the TXT text, or TLSA record data ``3 1 1 HEX``),
``CERTKIT_DNS_TYPE`` (``TXT`` or ``TLSA``) and ``CERTKIT_DOMAIN``. One
record name can carry several values (a wildcard and its base name share
one TXT name; a DANE lineage publishes its current and next key under one
TLSA name), so a hook must add records, not replace them; certkit runs
the hook for those one after the other, and for different record names in
parallel. Cleanup failures are reported, not fatal.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from certkit import runner
from certkit.errors import HookError, OperationError, UsageError


@dataclass(frozen=True)
class DnsRecord:
    """One record to publish or remove through the hook."""

    domain: str  # the identifier the record is for (CERTKIT_DOMAIN)
    name: str  # the owner name (CERTKIT_DNS_NAME)
    value: str  # CERTKIT_DNS_VALUE
    type: str = "TXT"  # CERTKIT_DNS_TYPE: TXT or TLSA


def hook_argv(command: str) -> list[str]:
    """The hook command as argv (shell-like quoting, never run through a shell)."""
    return runner.command_argv(command, "--dns-hook")


def check_runnable(command: str) -> None:
    """The hook's program exists and is executable: else exit 2 before anything else is done
    (and no cleanup runs for records that were never added)."""
    program = hook_argv(command)[0]
    if shutil.which(program) is None:
        raise UsageError(f"--dns-hook program {program!r} is not an executable file (or not on PATH)",
                         f"check the path, and chmod +x {program}")


def _run_hook(argv: list[str], action: str, record: DnsRecord) -> runner.Result:
    # child_env: certkit's environment minus its secrets (CERTKIT_PFX_PASSWORD never reaches the hook).
    env = runner.child_env({
        "CERTKIT_DNS_ACTION": action,
        "CERTKIT_DNS_NAME": record.name,
        "CERTKIT_DNS_VALUE": record.value,
        "CERTKIT_DNS_TYPE": record.type,
        "CERTKIT_DOMAIN": record.domain,
    })
    try:
        # hook=True: output spooled with a bounded tail (a chatty hook cannot fill memory), and a
        # timeout kills whatever the hook started.
        return runner.run(argv, env=env, timeout=runner.hook_timeout(), what=f"the DNS hook ({action} {record.name})",
                          hook=True)
    except HookError:
        raise
    except OperationError as exc:  # the program could not be started
        raise HookError(exc.message, "check --dns-hook: the program must exist and be executable") from exc


def _by_name(records: Sequence[DnsRecord]) -> list[list[DnsRecord]]:
    """Records grouped by record name and type, in first-seen order.

    Groups run in parallel, the records of one group one after the other: a
    hook that edits a zone file or an API record set (read, add, write)
    would lose one of two values written at the same moment.
    """
    groups: dict[tuple[str, str], list[DnsRecord]] = {}
    for record in records:
        groups.setdefault((record.name.rstrip(".").lower(), record.type), []).append(record)
    return list(groups.values())


def present(command: str, records: Sequence[DnsRecord]) -> None:
    """Run the hook with ``present`` for every record; HookError when one fails.

    Different record names in parallel, values of one name in turn (see :func:`_by_name`).
    """
    if not records:
        return
    argv = hook_argv(command)
    groups = _by_name(records)
    with ThreadPoolExecutor(max_workers=min(8, max(1, len(groups)))) as pool:
        done = pool.map(lambda group: [(r, _run_hook(argv, "present", r)) for r in group], groups)
        results = [pair for group_results in done for pair in group_results]
    for record, result in results:
        if not result.ok:
            raise HookError(f"the DNS hook failed to add the {record.type} record {record.name} "
                            f"(exit {result.returncode})"
                            + (f":\n{runner.clean_line_block(result.output_tail())}" if result.output_tail() else ""),
                            "fix the hook; it runs with CERTKIT_DNS_ACTION=present, CERTKIT_DNS_NAME, "
                            "CERTKIT_DNS_VALUE, CERTKIT_DNS_TYPE and CERTKIT_DOMAIN")


def cleanup(command: str, records: Sequence[DnsRecord], echo: Callable[[str], None]) -> None:
    """Run the hook with ``cleanup`` for every record; failures become warnings."""
    if not records:
        return
    argv = hook_argv(command)

    def one(record: DnsRecord) -> str | None:
        try:
            result = _run_hook(argv, "cleanup", record)
        except Exception as exc:
            return f"{record.type} {record.name}: {exc}"
        if result.ok:
            return None
        return f"{record.type} {record.name}: exit {result.returncode} {runner.clean_line_block(result.output_tail(3))}"

    groups = _by_name(records)
    with ThreadPoolExecutor(max_workers=min(8, len(groups))) as pool:
        problems = [p for group in pool.map(lambda g: [one(r) for r in g], groups) for p in group if p]
    for problem in problems:
        echo(f"warning: the DNS hook could not remove a record ({problem}); remove it by hand")
