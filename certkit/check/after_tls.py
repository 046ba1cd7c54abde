"""The main session after TLS: EHLO again, the relay probe, AUTH and the test message.

ehlo-after-tls, relay-refused, auth and send-test, with the gate that keeps
credentials and the message from a peer whose certificate failed a
CERT_GATE check (issue 10.1; --insecure-auth overrides, loudly), and the
client-certificate findings that only show once a session went through.
The relay probe also runs in clear when a server offers no STARTTLS.
"""

from __future__ import annotations

import base64

from certkit.check import clientcert
from certkit.check.checklist import (
    CERT_GATE,
    FIX,
    PROBE_FROM,
    RELAY_RCPT,
    Stop,
    auth_mechs,
    client_cert_refused,
    fail_step,
)
from certkit.check.options import CheckOptions
from certkit.check.report import FAIL, PASS, SKIP, WARN, CheckReport
from certkit.check.session import REDACTED, Reply, SessionError, SmtpSession
from certkit.check.target import Target


def after_tls(target: Target, opts: CheckOptions, report: CheckReport, session: SmtpSession) -> None:
    step = "ehlo-after-tls"
    try:
        ehlo = session.command(f"EHLO {opts.helo_name()}")
        _ehlo_after_tls(target, opts, report, ehlo)
        if not opts.quick:
            step = "relay-refused"
            relay_probe(report, session)
        wants_auth = opts.auth_user is not None and opts.password is not None
        if not (wants_auth or opts.send_test):
            return
        bad = [c for c in CERT_GATE if (r := report.get(c)) is not None and r.status == FAIL]
        if bad and not opts.insecure_auth:
            # This peer may be a man in the middle: it gets neither the password nor the message (issue 10.1).
            why = f"the certificate failed {', '.join(bad)} (--insecure-auth overrides)"
            if wants_auth:
                report.add("auth", SKIP, f"credentials withheld: {why}")
            if opts.send_test:
                report.add("send-test", SKIP, f"{'credentials' if wants_auth else 'test message'} withheld: {why}")
            return
        authenticated = False
        if wants_auth:
            step = "auth"
            authenticated = _auth(opts, report, session, auth_mechs(ehlo.ehlo_keywords()))
            if not authenticated and not opts.client_cert:
                _client_cert_behind_auth(target, opts, report)
            if bad:
                _warn_insecure(report, "auth", "credentials were sent", bad)
        if opts.send_test:
            step = "send-test"
            _send_test(opts, report, session, authenticated)
            if bad:
                _warn_insecure(report, "send-test", "the test message was sent", bad)
    except SessionError as exc:  # a late step failed; earlier results stand
        if step == "ehlo-after-tls" and (cert_stop := client_cert_refused(target, opts, report, exc)) is not None:
            raise cert_stop from exc
        raise fail_step(report, step, exc) from exc


def _client_cert_behind_auth(target: Target, opts: CheckOptions, report: CheckReport) -> None:
    """AUTH refused after TLS: say so when the server asked for a client certificate."""
    refused = report.get("auth")
    result = clientcert.judge_refused_auth(target, opts.timeout, opts.helo_name(), refused.detail if refused else "")
    if result is not None:
        report.add(result.id, result.status, result.detail, result.fix)


def client_cert_offered(target: Target, opts: CheckOptions, report: CheckReport) -> None:
    """--client-cert was given and the session went through: say whether the server asked for it."""
    result = clientcert.judge_offered(target, opts.timeout, opts.helo_name(), opts.client_cert or "")
    report.add(result.id, result.status, result.detail)


def _warn_insecure(report: CheckReport, check_id: str, what: str, bad: list[str]) -> None:
    """--insecure-auth: a PASS becomes a loud WARN, a FAIL keeps its status but says the same."""
    result = report.get(check_id)
    if result is None:
        return
    status = FAIL if result.status == FAIL else WARN
    report.add(check_id, status, f"INSECURE: {what} despite the failed {', '.join(bad)} (--insecure-auth): "
               f"{result.detail}", "drop --insecure-auth once the certificate checks pass; change the password if "
               "this server may not be yours")


def _ehlo_after_tls(target: Target, opts: CheckOptions, report: CheckReport, ehlo: Reply) -> None:
    if ehlo.code != 250:
        report.add("ehlo-after-tls", FAIL, f"EHLO after TLS refused: {ehlo.first}", FIX["ehlo-after-tls"])
        raise Stop("ehlo-after-tls")
    kw = ehlo.ehlo_keywords()
    problems = []
    if "STARTTLS" in kw:
        problems.append("STARTTLS offered again (RFC 3207 4.2 forbids it)")
    if target.submission and not auth_mechs(kw):
        problems.append("AUTH not offered: clients cannot log in to submit")
    if problems:
        report.add("ehlo-after-tls", FAIL, "; ".join(problems), FIX["ehlo-after-tls"])
    else:
        auth = f"AUTH {' '.join(auth_mechs(kw))}" if auth_mechs(kw) else "no AUTH"
        report.add("ehlo-after-tls", PASS, f"{auth}, no STARTTLS")


def relay_probe(report: CheckReport, session: SmtpSession) -> None:
    mail = session.command(f"MAIL FROM:<{PROBE_FROM}>")
    if mail.code >= 500:
        report.add("relay-refused", PASS, f"MAIL without AUTH refused: {mail.first}")
        return
    if mail.code != 250:
        report.add("relay-refused", WARN, f"MAIL without AUTH answered {mail.first}; relay not tested",
                   FIX["relay-refused"])
        session.command("RSET")
        return
    rcpt = session.command(f"RCPT TO:<{RELAY_RCPT}>")
    session.command("RSET")
    if rcpt.code >= 500:
        report.add("relay-refused", PASS, f"relay to {RELAY_RCPT} without AUTH refused: {rcpt.first}")
    elif rcpt.code >= 400:
        report.add("relay-refused", WARN, f"relay without AUTH answered {rcpt.first} (temporary, not a clear "
                   "refusal)", FIX["relay-refused"])
    else:
        report.add("relay-refused", FAIL, f"OPEN RELAY: RCPT TO:<{RELAY_RCPT}> accepted without AUTH "
                   f"({rcpt.first})", FIX["relay-refused"])


def _auth(opts: CheckOptions, report: CheckReport, session: SmtpSession, mechs: list[str]) -> bool:
    user, password = opts.auth_user or "", opts.password or ""
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    # Longest first: the PLAIN token contains neither, but the base64 forms must go before the raw password.
    session.secrets.extend(sorted({token, base64.b64encode(password.encode()).decode(), password},
                                  key=len, reverse=True))
    if "PLAIN" in mechs or not mechs:
        reply = session.command(f"AUTH PLAIN {token}", shown=f"AUTH PLAIN {REDACTED}")
        if reply.code == 334:
            reply = session.command(token, shown=REDACTED)
    elif "LOGIN" in mechs:
        reply = session.command("AUTH LOGIN")
        if reply.code == 334:
            reply = session.command(base64.b64encode(user.encode()).decode(), shown=REDACTED)
        if reply.code == 334:
            reply = session.command(base64.b64encode(password.encode()).decode(), shown=REDACTED)
    else:
        report.add("auth", FAIL, f"no PLAIN or LOGIN among AUTH mechanisms {' '.join(mechs)}", FIX["auth"])
        return False
    if reply.code == 235:
        report.add("auth", PASS, f"logged in as {user}")
        return True
    report.add("auth", FAIL, f"AUTH as {user} refused: {session.redact(reply.first)}", FIX["auth"])
    return False


def _send_test(opts: CheckOptions, report: CheckReport, session: SmtpSession, authenticated: bool) -> None:
    from email.utils import formatdate, make_msgid

    sender, rcpt = opts.mail_from or "", opts.rcpt_to or ""
    domain = sender.rpartition("@")[2] or "certkit.invalid"
    for cmd, wanted in ((f"MAIL FROM:<{sender}>", (250,)), (f"RCPT TO:<{rcpt}>", (250, 251)), ("DATA", (354,))):
        reply = session.command(cmd)
        if reply.code not in wanted:  # e.g. a 250 to DATA: sending the body would desynchronise the session
            session.command("RSET")
            why = "" if authenticated else " (not authenticated: pass --auth-user and --password-file)"
            report.add("send-test", FAIL, f"{cmd.split(':')[0]} refused: {reply.first}{why}", FIX["send-test"])
            return
    body = (
        f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: certkit check test message\r\n"
        f"Date: {formatdate(usegmt=True)}\r\nMessage-ID: {make_msgid('certkit', domain=domain)}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Test message from certkit check: submission to {session.host} port {session.port} works.\r\n"
    )
    session.send_raw(body.encode() + b".\r\n", f"<message: {len(body)} bytes>\n.")
    reply = session.read_reply("reply to the message")
    if reply.code == 250:
        report.add("send-test", PASS, f"message queued: {reply.first}")
    else:
        report.add("send-test", FAIL, f"message refused: {reply.first}", FIX["send-test"])


__all__ = ["after_tls", "client_cert_offered", "relay_probe"]
