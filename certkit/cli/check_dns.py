"""`certkit check --dane / --mta-sts`: the DNS-based options of check (the work is in certkit.check.dane and
certkit.check.mtasts)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from certkit.cli.context import echo_json
from certkit.errors import CheckFailed, UsageError


def dane_options(opts: dict[str, Any]) -> Any:
    """The DaneOptions for --dane (None without it); --resolver/--dnssec-anchor alone are a usage error."""
    if opts.get("policy_url") and not opts.get("mta_sts"):
        raise UsageError("--policy-url is for --mta-sts", "add --mta-sts DOMAIN")
    if not opts.get("dane"):
        if opts.get("dnssec_anchor"):
            raise UsageError("--dnssec-anchor is for --dane", "add --dane")
        if opts.get("resolver") and not opts.get("mta_sts"):
            raise UsageError("--resolver is for --dane or --mta-sts", "add --dane")
        return None
    from certkit.check.dane import parse_options

    return parse_options(opts.get("resolver"), opts.get("dnssec_anchor"), min(float(opts.get("timeout") or 5), 10))


def mta_sts_only(urls: tuple[str, ...], opts: dict[str, Any]) -> bool:
    """Whether this run is `check --mta-sts DOMAIN` (the URLs, if any, are then the MX endpoints)."""
    if not opts.get("mta_sts"):
        return False
    if opts.get("dane") or opts.get("targets_file"):
        raise UsageError("--mta-sts is checked on its own", "run `certkit check --mta-sts DOMAIN` separately")
    return True


def run_mta_sts(opts: dict[str, Any], urls: list[str], show: Callable[[str], None]) -> None:
    """Check the policy of --mta-sts DOMAIN and its MX hosts; print; exit 1 on a FAIL."""
    from certkit.check import render_text
    from certkit.check.mtasts import MtaStsOptions, audit_policy
    from certkit.names import parse_name

    domain = parse_name(opts["mta_sts"]).value
    from certkit.hostport import dns_server

    resolver = dns_server(opts["resolver"], "--resolver") if opts.get("resolver") else None
    from certkit.check import parse_target

    endpoints = [(url, opts.get("name") or parse_target(url).host) for url in urls]
    report = audit_policy(domain, MtaStsOptions(resolver=resolver, cafile=opts.get("cafile"),
                                                timeout=float(opts.get("timeout") or 10),
                                                policy_url=opts.get("policy_url"), mx_urls=endpoints))
    if opts.get("as_json"):
        echo_json(report.to_json())
    else:
        show(render_text(report, transcript=False))
    if not report.ok:
        raise CheckFailed(f"{report.target}: {len(report.failed)} check(s) FAILED ({', '.join(report.failed)})",
                          "see the fix under each FAIL line")
