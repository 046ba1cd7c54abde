"""What `issue`, `selfssl` and `export` do between parsing and printing.

Kept out of cli.py so that `certkit --help` imports none of it.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import click

from certkit import clock, keys, names
from certkit import x509 as cx
from certkit.callbacks import Echo
from certkit.cli import records
from certkit.cli.context import echo_json
from certkit.csrfile import CsrInfo, read_csr_file
from certkit.errors import UsageError
from certkit.issuing import DryRun, IssueOutcome, issue
from certkit.progress import StatusLine
from certkit.secretfile import read_secret_file
from certkit.settings import PRIVATE_CA_SOURCE, AcmeSettings, DaneSettings, DeployTarget, LineageSettings, PfxSettings
from certkit.store import Store, check_lineage_name, lineage_name_for

DAYS_WARN = 398  # CA/B Forum maximum since 2020; clients (Apple) reject longer public certificates


def warn(text: str) -> None:
    click.secho(f"warning: {text}", fg="yellow", err=True)


# The ACME options of `issue` are AcmeSettings' fields, one to one (the flags: yes/no, the rest: values).
ACME_FLAGS = ("agree_tos", "reuse_key")
ACME_ONLY = tuple(f.name for f in dataclasses.fields(AcmeSettings) if f.name not in ACME_FLAGS)
ACME_PATHS = ("eab_hmac_key_file", "ca_bundle", "webroot")  # stored absolute: renewals run from anywhere


def _acme_settings(opts: dict[str, Any]) -> AcmeSettings:
    acme = AcmeSettings()
    for field_name in ACME_ONLY:
        value = opts.get(field_name)
        if value is not None:
            if field_name in ACME_PATHS and value:
                value = str(Path(value).absolute())
            setattr(acme, field_name, value)
    for flag in ACME_FLAGS:
        setattr(acme, flag, bool(opts.get(flag)))
    if acme.dns_hook and not opts.get("challenge"):
        acme.challenge = "dns-01"
    return acme


def _names_and_key(opts: dict[str, Any], csr: CsrInfo | None) -> tuple[list[names.Identity], str]:
    """The names and key type: from --cn/--san/--key, or from the CSR (which then excludes them)."""
    if csr is None:
        if not opts.get("cn"):
            raise UsageError("issue needs --cn NAME (or --csr FILE)", "e.g. certkit issue --cn mail.example.com")
        identities = names.parse_names(opts["cn"], opts.get("san") or ())
        return identities, keys.check_key_type(opts.get("key_type") or keys.DEFAULT_KEY_TYPE,
                                               opts.get("allow_weak", False))
    given = [flag for flag, value in (("--cn", opts.get("cn")), ("--san", opts.get("san")),
                                      ("--key", opts.get("key_type") not in (None, keys.DEFAULT_KEY_TYPE)))
             if value]
    if given:
        raise UsageError(f"{', '.join(given)} cannot be combined with --csr: the names and key come from the CSR",
                         "drop them, or make a new CSR with the names you want")
    if not opts.get("use_acme"):
        raise UsageError("--csr needs --acme: a self-signed certificate is signed with its own key, "
                         "and that key stays on the server that made the CSR",
                         "add --acme ..., or make the self-signed certificate on that server")
    for flag in ("pfx", "trust", "pfx_password_file"):
        if opts.get(flag):
            raise UsageError(f"--{flag.replace('_', '-')} needs the private key, which a --csr lineage does not have",
                             "make the PFX on the server that holds the key")
    return csr.identities, csr.key_type


def build_settings(opts: dict[str, Any], csr: CsrInfo | None = None) -> LineageSettings:
    """Turn `issue` options into lineage settings, refusing contradictions (exit 2)."""
    identities, key_type = _names_and_key(opts, csr)
    lineage = check_lineage_name(opts.get("lineage") or lineage_name_for(identities[0].value))
    use_acme = bool(opts.get("use_acme"))
    if use_acme and opts.get("self_signed"):
        raise UsageError("--self-signed and --acme exclude each other", "pick one")
    ca_name = _private_ca(opts, use_acme)
    if not use_acme:
        # --dns-hook also publishes TLSA records, so --dane takes it without --acme (self-signed DANE-EE).
        acme_only = [o for o in ACME_ONLY if not (o == "dns_hook" and opts.get("dane"))]
        # `is`, not `in`: --dns-wait 0 is given too (0 == False).
        given = [f"--{o.replace('_', '-')}" for o in acme_only if opts.get(o) is not None and opts.get(o) is not False
                 and opts.get(o) != ""]
        if given or any(opts.get(flag) for flag in ACME_FLAGS):
            verb = "needs" if len(given) == 1 else "need"
            raise UsageError(f"{', '.join(given) or 'ACME options'} {verb} --acme",
                             "add --acme, or drop them for a self-signed certificate")
    if use_acme and opts.get("trust"):
        raise UsageError("--trust is for self-signed certificates",
                         "an ACME certificate is trusted through its CA already")
    if use_acme and opts.get("days") is not None:
        raise UsageError("--days applies to self-signed certificates", "the ACME CA decides the lifetime")
    days = opts.get("days") or 365
    if not use_acme and days > DAYS_WARN:
        warn(f"{days} days is longer than {DAYS_WARN}: Apple clients and some MTAs reject such certificates; "
             "certkit renews automatically, so shorter is fine")
    pfx = PfxSettings(
        enabled=bool(opts.get("pfx")),
        encryption=opts.get("pfx_encryption") or "auto",
        password_file=str(Path(opts["pfx_password_file"]).absolute()) if opts.get("pfx_password_file") else None,
    )
    if pfx.password_file:
        read_secret_file(pfx.password_file, "PFX password")  # fail early, before any key is made
    if csr is not None and opts.get("dane"):
        raise UsageError("--dane cannot be combined with --csr: a DANE rollover stages the next key here, "
                         "and a CSR's key lives on the server that made it",
                         "publish that server's TLSA records with its own tools, or issue here without --csr")
    return LineageSettings(
        name=lineage,
        domains=[i.value for i in identities],
        key_type=key_type,
        source="self-signed",
        days=days,
        allow_weak=bool(opts.get("allow_weak")),
        acme=_acme_settings(opts) if use_acme else None,
        pfx=pfx,
        trust=bool(opts.get("trust")),
        trust_store_dir=str(Path(opts["trust_store_dir"]).absolute()) if opts.get("trust_store_dir") else None,
        ca=ca_name,
        csr=csr is not None,
        dane=_dane_settings(opts, identities[0].value),
    )


def _private_ca(opts: dict[str, Any], use_acme: bool) -> str | None:
    """The --ca NAME, refused with --acme, --self-signed and --trust (exit 2)."""
    name = opts.get("ca")
    if not name:
        return None
    from certkit.ca.storage import check_name

    for flag, given in (("--acme", use_acme), ("--self-signed", opts.get("self_signed"))):
        if given:
            raise UsageError(f"--ca and {flag} exclude each other", "pick one way to sign the certificate")
    if opts.get("trust"):
        raise UsageError("--trust is for self-signed certificates",
                         f"trust the CA once instead: certkit ca trust {name} (its leaves need no trust step)")
    return check_name(name)


def _dane_settings(opts: dict[str, Any], first_name: str) -> DaneSettings | None:
    """--dane and its companions; the companions without --dane are a usage error."""
    given = [f"--{o.replace('_', '-')}" for o in ("dane_port", "dane_host", "dane_ca", "dane_nameserver")
             if opts.get(o) not in (None, False, ())]
    if not opts.get("dane"):
        if given:
            raise UsageError(f"{', '.join(given)} need --dane", "add --dane")
        return None
    host = opts.get("dane_host")
    if host is not None:
        host = names.parse_name(host).value
    elif first_name.startswith("*."):
        raise UsageError("--dane with a wildcard --cn needs --dane-host MX", "name the MX host the TLSA is for")
    servers = list(opts.get("dane_nameserver") or ())
    for spec in servers:
        from certkit.hostport import dns_server

        dns_server(spec, "--dane-nameserver")
    if opts.get("dns_hook"):
        from certkit.dnshook import check_runnable

        check_runnable(opts["dns_hook"])
    return DaneSettings(port=opts.get("dane_port") or 25, host=host, dns_hook=opts.get("dns_hook"),
                        nameservers=servers, ca=bool(opts.get("dane_ca")))


def parse_deploy_targets(specs: tuple[str, ...] | list[str]) -> list[DeployTarget]:
    if not specs:
        return []
    from certkit.deploy.targets import parse_target

    return [parse_target(spec) for spec in specs]


def run_issue(store: Store, opts: dict[str, Any]) -> None:
    csr = read_csr_file(opts["csr_file"], bool(opts.get("allow_weak"))) if opts.get("csr_file") else None
    settings = build_settings(opts, csr)
    if settings.ca is not None:  # names outside the CA's constraints: exit 2 before any key is made
        from certkit.ca.manage import check_names

        check_names(store, settings.ca, [names.parse_name(d) for d in settings.domains])
    if store.exists(settings.name):
        old = store.load_settings(settings.name)
        if not opts.get("expand"):
            refuse_silent_change(old, settings)
        settings.deploy, settings.verify = old.deploy, old.verify  # re-run what was remembered
        if settings.dane is None:
            settings.dane = old.dane  # DANE stays on: dropping it would leave stale TLSA records behind
    if len(settings.domains[0]) > names.MAX_CN:
        warn(f"{settings.domains[0]} is longer than 64 characters, the CN limit: the certificate has no CN "
             "and carries the name as a SAN only (what clients match); IIS will show an empty name")
    targets = parse_deploy_targets(opts.get("deploy_targets") or ())
    as_json = bool(opts.get("as_json"))
    # With --json, stdout carries only the record: progress lines (ACME waits, deploy steps) go to stderr.
    echo = (lambda line: click.echo(line, err=True)) if as_json else click.echo
    if opts.get("dry_run"):
        from certkit.issuing import dry_run

        made = dry_run(store, settings, echo=echo, csr_pem=csr.pem if csr else None)
        report_dry_run(made, settings, as_json)
        return
    outcome = issue(store, settings, echo=echo, extra_targets=targets,
                    extra_verify=list(opts.get("verify_urls") or ()), csr_pem=csr.pem if csr else None,
                    progress=status_line(echo))
    report(store, outcome, as_json)


def status_line(echo: Echo) -> StatusLine:
    """The status line of long waits: in place on stderr when that is a terminal, else plain lines."""
    raw = (lambda text: click.echo(text, err=True, nl=False)) if sys.stderr.isatty() else None
    return StatusLine(echo, raw)


def report_dry_run(made: DryRun, settings: LineageSettings, as_json: bool) -> None:
    """What the dry run proved, and that nothing was kept."""
    cert = cx.load_chain(made.cert_pem)[0]
    rec: dict[str, Any] = {"dry_run": True, "stored": False, "name": made.name, "domains": list(settings.domains),
           "source": made.source, "key_type": made.key_type, "serial": cx.serial_hex(cert),
           "not_after": clock.iso(cx.not_after(cert)), "issuer": cx.issuer_text(cert)}
    if as_json:
        echo_json(rec)
        return
    kind = "made a self-signed certificate" if made.source == "self-signed" else f"the CA at {made.source} issued"
    click.echo(f"Dry run for {made.name}: {kind} for {', '.join(settings.domains)} "
               f"(serial {rec['serial']}, valid until {rec['not_after'][:10]}).")
    click.echo("Nothing was stored or deployed: no lineage, no version, no account; the certificate was discarded.")
    click.echo("Next: the same command without --dry-run issues it for real.")


def refuse_silent_change(old: LineageSettings, new: LineageSettings) -> None:
    """Exit 2 when re-issuing would change a lineage's names or key type without --expand.

    A typo in --san would otherwise drop a real name from the next version, an
    ECDSA key would break an Exchange 2003 that only speaks RSA, and
    `--cn wildcard.example.org` would become version 2 of the `*.example.org`
    lineage (its folder has the same name).
    """
    changes = []
    if old.domains != new.domains:
        removed = [d for d in old.domains if d not in new.domains]
        added = [d for d in new.domains if d not in old.domains]
        what = "; ".join(part for part in (f"drops {', '.join(removed)}" if removed else "",
                                            f"adds {', '.join(added)}" if added else "") if part)
        changes.append(f"names {', '.join(old.domains)} -> {', '.join(new.domains)}"
                       + (f" ({what})" if what else " (another order: the CN changes)"))
    if old.key_type != new.key_type:
        changes.append(f"key {old.key_type} -> {new.key_type}")
    if old.csr != new.csr:  # servers reading live/privkey.pem would lose it (or gain one nobody asked for)
        changes.append("key " + ("here -> kept by the server that made the CSR (no key file)" if new.csr
                                 else "from a CSR -> made here (a key file)"))
    if changes:
        raise UsageError(f"lineage {new.name!r} would change: {'; '.join(changes)}",
                         "add --expand to change it on purpose, or --name NEW for a separate lineage")


def report(store: Store, outcome: IssueOutcome, as_json: bool) -> None:
    """mkcert-style summary: what was made, for which names, until when, where; then next steps."""
    rec = records.record(store, outcome.name)
    if as_json:
        echo_json(rec)
        return
    kind = _kind(rec)
    verb = "Created a new" if outcome.previous_version is None else f"Issued version {outcome.version} of the"
    click.echo(f"{verb} {kind} for:")
    for domain in rec["domains"]:
        click.echo(f"  - {domain}")
    click.echo(f"Key: {keys.describe(rec['key_type'])}.  Valid until {rec['not_after'][:10]} "
               f"({rec['days_left']} days); renewal due after {rec['renew_after'][:10]}.")
    click.echo("")
    paths = rec["paths"]
    click.echo(f"  certificate    {paths['cert']}")
    click.echo(f"  private key    {paths['key'] or 'none here: it stays on the server that made the CSR'}")
    if rec["source"] != "self-signed" and not rec["issuer_ca"]:
        click.echo(f"  chain          {paths['chain']}")
    click.echo(f"  fullchain      {paths['fullchain']}")
    if paths["combined"]:
        click.echo(f"  key+fullchain  {paths['combined']}   (Postfix smtpd_tls_chain_files)")
    else:
        click.echo(f"  request        {rec['csr']}   (renewals send it again)")
    if paths.get("pfx"):
        click.echo(f"  pfx            {paths['pfx']}")
        if outcome.pfx_password_generated:
            click.echo(f"  pfx password   {store.live_paths(outcome.name).pfx_password}   (generated, mode 0600)")
    for note in outcome.notes:
        click.echo(f"  {note}")
    click.echo("")
    name = outcome.name
    steps = [
        (f"certkit deploy {name} --to postfix --setup-submission", "Postfix on 25 and 587"),
        (f"certkit export {name} --format pfx --out {name}.pfx", "IIS / Exchange"),
        check_hint(name, rec["domains"][0], rec["source"]),
    ]
    if rec["csr"]:  # the certificate goes back to the server holding the key
        steps[:2] = [(f"certkit export {name} --format pem --out {name}", "cert + chain for the server with the key"),
                     (f"certkit export {name} --format der --out {name}.cer",
                      "Exchange: Import-ExchangeCertificate completes the pending request")]
    if store.load_settings(name).dane is not None:
        steps.append((f"certkit dane {name}", "the TLSA records (DNSSEC-signed zone; docs/dane-mta-sts.md)"))
    width = max(len(command) for command, _ in steps)
    click.echo("Next:")
    for command, why in steps:
        click.echo(f"  {command:<{width}}   # {why}")


def _kind(rec: dict[str, Any]) -> str:
    if rec["issuer_ca"]:
        return f"certificate from the private CA {rec['issuer_ca']} (generation {rec['issuer_ca_generation']})"
    return "self-signed certificate" if rec["source"] == "self-signed" else "certificate from " + rec["source"]


def check_hint(lineage: str, first_name: str, source: str) -> tuple[str, str]:
    """The `certkit check` line that proves the certificate is served, as a command that parses."""
    host, why = first_name, "prove it is served"
    if first_name.startswith("*."):
        host, why = "mail." + first_name[2:], f"prove it is served (any host under {first_name})"
    elif ":" in first_name:
        host = f"[{first_name}]"  # an IPv6 address in a URL needs brackets
    if source.startswith(PRIVATE_CA_SOURCE):
        ca = source[len(PRIVATE_CA_SOURCE):]
        why += f" (elsewhere: --cafile from `certkit ca export {ca} --format pem`)"
    elif source not in ("self-signed", *_PUBLIC_ACME):
        why += " (add --cafile ROOT.pem for a private CA)"
    return f"certkit check submission://{host}:587 --expect {lineage}", why


# Directory URLs whose roots every system trust store carries.
_PUBLIC_ACME = ("https://acme-v02.api.letsencrypt.org/directory",)


# ----- selfssl -----------------------------------------------------------------

SELFSSL_EXAMPLES = {"N": "CN=host", "K": "2048", "V": "365", "S": "1", "P": "443"}
SELFSSL_HELP = "usage: certkit selfssl /N:CN=host [/K:2048] [/V:365] [/T] [/S:site] [/P:port] [/Q]"


def parse_selfssl(args: tuple[str, ...] | list[str]) -> dict[str, str | bool]:
    """SelfSSL's own switches, case-insensitive: /N:CN=.. /K:n /V:n /T /S:n /P:n /Q."""
    parsed: dict[str, str | bool] = {}
    for arg in args:
        if len(arg) < 2 or arg[0] not in "/-":
            raise UsageError(f"unexpected argument {arg!r}", SELFSSL_HELP)
        switch, _, value = arg[1:].partition(":")
        switch = switch.upper()
        if switch in ("T", "Q"):
            parsed[switch] = True
        elif switch in ("N", "K", "V", "S", "P"):
            if not value:
                raise UsageError(f"/{switch} needs a value, like /{switch}:{SELFSSL_EXAMPLES[switch]}", SELFSSL_HELP)
            parsed[switch] = value
        else:
            raise UsageError(f"unknown SelfSSL switch /{switch}", SELFSSL_HELP)
    return parsed


def _selfssl_cn(value: str) -> str:
    # /N takes an X.500 name; SelfSSL users write CN=host (other RDNs are dropped: SANs are what matter).
    for part in value.split(","):
        key, _, val = part.strip().partition("=")
        if key.strip().upper() == "CN" and val.strip():
            return val.strip()
    raise UsageError(f"/N:{value} has no CN=", "write /N:CN=mail.example.com")


def _int_switch(parsed: dict[str, str | bool], switch: str, default: int, what: str) -> int:
    raw = parsed.get(switch)
    if raw is None:
        return default
    try:
        return int(str(raw))
    except ValueError:
        raise UsageError(f"/{switch}:{raw} is not a number of {what}", SELFSSL_HELP) from None


def run_selfssl(store: Store, args: tuple[str, ...], allow_weak: bool, as_json: bool,
                trust_store_dir: str | None = None) -> None:
    if not args:
        raise UsageError("selfssl needs at least /N:CN=host (the name clients connect to)", SELFSSL_HELP)
    parsed = parse_selfssl(args)
    if "N" in parsed:
        cn = _selfssl_cn(str(parsed["N"]))
    else:  # SelfSSL's default: this computer's name - unless that is no name a client could use
        import socket

        cn = socket.getfqdn()
        if "." not in cn or cn.startswith("localhost"):
            raise UsageError(f"this computer's name is {cn!r}, which no mail client connects to",
                             f"give the name with /N:CN=mail.example.com ({SELFSSL_HELP})")
    bits = _int_switch(parsed, "K", 2048, "bits")
    days = _int_switch(parsed, "V", 365, "days")
    if days < 1:
        raise UsageError(f"/V:{days} must be at least 1 day", SELFSSL_HELP)
    if bits < 2048 and not allow_weak:
        fixed = [a for a in args if not a.upper().startswith(("/K", "-K"))] + ["/K:2048"]
        raise UsageError(
            f"/K:{bits} asks for a {bits}-bit RSA key, which is refused: {keys.WEAK_KEY_HINT}",
            f"use /K:2048, e.g. certkit selfssl {' '.join(fixed)}",
        )
    if bits not in (1024, 1536, 2048, 3072, 4096):
        raise UsageError(f"/K:{bits} is not a supported RSA size", "use /K:2048, /K:3072 or /K:4096")
    opts: dict[str, Any] = {"cn": cn, "key_type": f"rsa{bits}", "days": days, "allow_weak": allow_weak,
                            "trust": bool(parsed.get("T")), "trust_store_dir": trust_store_dir,
                            "as_json": as_json}
    if sys.platform == "win32" and ("S" in parsed or "P" in parsed):
        spec = f"iis:site={parsed.get('S', '1')},port={parsed.get('P', '443')}"
        opts["deploy_targets"] = (spec,)
        opts["pfx"] = True
    elif "S" in parsed or "P" in parsed:
        warn("/S and /P (IIS site and port) are ignored here: they apply on Windows; "
             "use `certkit deploy NAME --to iis` there")
    run_issue(store, opts)
