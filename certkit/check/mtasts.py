"""`check --mta-sts DOMAIN`: the domain's MTA-STS policy as a sending server sees it (RFC 8461).

Check ids: ``mta-sts-policy`` - the ``_mta-sts`` TXT record, the policy
fetched over validated HTTPS from ``https://mta-sts.DOMAIN/.well-known/mta-sts.txt``
(``--cafile`` for a private CA), its syntax; and one ``mta-sts-mx`` per MX
host - covered by the policy's ``mx`` patterns, and serving a certificate
that is trusted and valid for the MX name (what an enforcing sender requires).
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from certkit.check.report import FAIL, PASS, WARN, CheckReport

MAX_POLICY = 65536  # RFC 8461 section 3.3: senders may refuse larger policies
FIX_RECORD = "publish the TXT records `certkit mta-sts DOMAIN --mx HOST...` prints"
FIX_POLICY = ("serve the policy `certkit mta-sts DOMAIN --mx HOST... --webroot DIR` writes, as text/plain over "
              "HTTPS with a trusted certificate for mta-sts.DOMAIN (certkit issue --cn mta-sts.DOMAIN --acme ...)")
FIX_MX = "add the MX host to the policy (certkit mta-sts DOMAIN --mx HOST...) and publish it again"


@dataclass(frozen=True)
class MtaStsOptions:
    """How to look the policy up; ``mx_urls`` are (URL, MX name) pairs to check instead of DOMAIN's MX records."""

    resolver: tuple[str, int] | None = None
    cafile: str | None = None
    timeout: float = 10.0
    policy_url: str | None = None
    mx_urls: list[tuple[str, str]] = field(default_factory=list)


def parse_policy(text: str) -> tuple[dict[str, list[str]], list[str]]:
    """The policy's fields (``mx`` may repeat) and what is wrong with it (RFC 8461 section 3.2)."""
    fields: dict[str, list[str]] = {}
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            return fields, [f"line {line[:40]!r} is not KEY: VALUE"]
        fields.setdefault(key.strip(), []).append(value.strip())
    problems = []
    if fields.get("version") != ["STSv1"]:
        problems.append("version must be STSv1")
    mode = (fields.get("mode") or [""])[0]
    if mode not in ("testing", "enforce", "none"):
        problems.append(f"mode {mode!r} is not testing, enforce or none")
    age = (fields.get("max_age") or [""])[0]
    if not age.isdigit() or int(age) > 31557600:
        problems.append(f"max_age {age!r} is not 0 to 31557600 seconds")
    if mode != "none" and not fields.get("mx"):
        problems.append("no mx lines")
    return fields, problems


def mx_covered(host: str, patterns: list[str]) -> str | None:
    """The pattern that covers ``host`` (a ``*.`` pattern covers exactly one more label), else None."""
    host = host.rstrip(".").lower()
    for pattern in patterns:
        p = pattern.rstrip(".").lower()
        if p == host or (p.startswith("*.") and host.partition(".")[2] == p[2:] and "." in host):
            return pattern
    return None


def _resolve(name: str, rdtype: str, opts: MtaStsOptions) -> list[str]:
    """Records of ``name`` as text, through --resolver (or the system resolver); [] when there are none."""
    import dns.message
    import dns.query
    import dns.rdatatype
    import dns.resolver

    host, port = opts.resolver or (dns.resolver.get_default_resolver().nameservers[0], 53)
    query = dns.message.make_query(name.rstrip(".") + ".", rdtype)
    response, _tcp = dns.query.udp_with_fallback(query, str(host), port=int(port), timeout=min(opts.timeout, 5))
    wanted = dns.rdatatype.from_text(rdtype)
    out = []
    for rrset in response.answer:
        if rrset.rdtype == wanted:
            for r in rrset:
                if rdtype == "TXT":
                    out.append(b"".join(r.strings).decode("utf-8", "replace"))
                elif rdtype == "MX":
                    out.append(r.exchange.to_text(omit_final_dot=True))
                else:
                    out.append(r.to_text())
    return out


def fetch(url: str, opts: MtaStsOptions) -> tuple[int, str, str]:
    """GET ``url`` over HTTPS, the certificate verified for its host; (status, content type, body).

    Raises:
        OSError / ssl.SSLError: no connection or an untrusted certificate.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 443
    try:
        address = _resolve(host, "A", opts)[0] if opts.resolver else host
    except IndexError:
        raise OSError(f"{host} has no A record") from None
    ctx = ssl.create_default_context(cafile=opts.cafile)
    with socket.create_connection((address, port), timeout=opts.timeout) as raw, \
            ctx.wrap_socket(raw, server_hostname=host) as tls:
        tls.sendall(f"GET {parts.path or '/'} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: certkit\r\n\r\n".encode())
        data = b""
        while len(data) <= MAX_POLICY + 4096 and (chunk := tls.recv(65536)):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if len(lines[0].split()) > 1 and lines[0].split()[1].isdigit() else 0
    ctype = next((ln.split(":", 1)[1].strip() for ln in lines[1:] if ln.lower().startswith("content-type:")), "")
    return status, ctype, body[:MAX_POLICY + 1].decode("utf-8", "replace")


def _policy_check(domain: str, opts: MtaStsOptions, report: CheckReport) -> list[str] | None:
    """The ``mta-sts-policy`` result; the policy's mx patterns when it can be used."""
    import dns.exception

    try:
        txt = [t for t in _resolve(f"_mta-sts.{domain}", "TXT", opts) if t.startswith("v=STSv1")]
    except (dns.exception.DNSException, OSError) as exc:
        report.add("mta-sts-policy", FAIL, f"cannot look up _mta-sts.{domain} ({exc})", "check --resolver")
        return None
    if len(txt) != 1 or "id=" not in txt[0]:
        report.add("mta-sts-policy", FAIL, f"_mta-sts.{domain} has {len(txt)} v=STSv1 TXT records with an id "
                   "(exactly one is needed)", FIX_RECORD)
        return None
    url = opts.policy_url or f"https://mta-sts.{domain}/.well-known/mta-sts.txt"
    try:
        status, ctype, body = fetch(url, opts)
    except (OSError, ssl.SSLError, ValueError) as exc:
        report.add("mta-sts-policy", FAIL, f"cannot fetch {url} over validated HTTPS: {exc}", FIX_POLICY)
        return None
    fields, problems = parse_policy(body)
    if status != 200:
        problems.insert(0, f"HTTP status {status}")
    if not ctype.lower().startswith("text/plain"):
        problems.append(f"Content-Type {ctype or '(none)'} is not text/plain")
    if len(body) > MAX_POLICY:
        problems.append("the policy is over 64 KiB")
    record_id = txt[0].split("id=", 1)[1].split(";")[0].strip()
    if problems:
        report.add("mta-sts-policy", FAIL, f"{url}: " + "; ".join(problems), FIX_POLICY)
        return None
    mode = fields["mode"][0]
    detail = (f"{url}: mode {mode}, mx {', '.join(fields.get('mx', []))}, max_age {fields['max_age'][0]}; "
              f"_mta-sts id={record_id}")
    report.add("mta-sts-policy", WARN if mode == "testing" else PASS, detail,
               "switch to --mode enforce once the TLS reports are clean" if mode == "testing" else "")
    return fields.get("mx", [])


def _mx_checks(domain: str, patterns: list[str], opts: MtaStsOptions, report: CheckReport) -> None:
    """One ``mta-sts-mx`` per MX: covered, and a trusted certificate valid for its name."""
    from certkit.check.checks import audit
    from certkit.check.options import CheckOptions
    from certkit.check.target import parse_target

    endpoints = opts.mx_urls or [(f"smtp://{mx}:25", mx) for mx in _resolve(domain, "MX", opts)]
    if not endpoints:
        report.add("mta-sts-mx", FAIL, f"{domain} has no MX records", "publish the domain's MX records")
    for url, name in endpoints:
        pattern = mx_covered(name, patterns)
        if pattern is None:
            report.add("mta-sts-mx", FAIL, f"{name} is not covered by the policy's mx lines ({', '.join(patterns)})",
                       FIX_MX)
            continue
        seen = audit(parse_target(url), CheckOptions(name=name, cafile=opts.cafile, timeout=opts.timeout,
                                                     quick=True))
        bad = [c for c in seen.checks if c.id in ("tls-handshake", "chain-trust", "name-match") and c.status != PASS]
        if bad or seen.get("name-match") is None:
            why = "; ".join(f"{c.id}: {c.detail}" for c in bad) or "no TLS session"
            report.add("mta-sts-mx", FAIL, f"{name} ({url}): covered by {pattern}, but {why}",
                       "serve a trusted certificate for the MX name: certkit issue --cn MX --acme, deploy")
        else:
            report.add("mta-sts-mx", PASS, f"{name} ({url}): covered by {pattern}; trusted certificate valid "
                       "for the name")


def audit_policy(domain: str, opts: MtaStsOptions) -> CheckReport:
    """The MTA-STS report of ``domain`` (target ``mta-sts:DOMAIN``)."""
    started = time.perf_counter()
    report = CheckReport(f"mta-sts:{domain}")
    patterns = _policy_check(domain, opts, report)
    if patterns is not None:
        _mx_checks(domain, patterns, opts, report)
    report.elapsed_ms = round((time.perf_counter() - started) * 1000)
    return report
