"""`certkit smtpd` (click group; the server lives in certkit.smtpd).

Without a subcommand the group runs the server; `certkit smtpd adduser`
manages its users file.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from certkit.errors import UsageError


@click.group("smtpd", invoke_without_command=True)
@click.option("--listen", default=None, metavar="HOST:PORT",
              help="Submission listener (STARTTLS required), e.g. 0.0.0.0:587 (a bare PORT means 127.0.0.1).")
@click.option("--cert", "lineage", default=None, metavar="LINEAGE", help="Lineage whose live certificate is served.")
@click.option("--users", "users_file", default=None, type=click.Path(dir_okay=False),
              help="Users file (create it with `certkit smtpd adduser FILE USER`).")
@click.option("--maildir", default=None, type=click.Path(file_okay=False), help="Deliver into this Maildir.")
@click.option("--relay", default=None, metavar="HOST:PORT", help="Forward accepted mail to this smarthost.")
@click.option("--smtps-listen", default=None, metavar="HOST:PORT",
              help="Also listen with implicit TLS, e.g. 0.0.0.0:465.")
@click.option("--pid-file", default=None, type=click.Path(dir_okay=False),
              help="Write the pid here (and PID-FILE.status after reloads) for `certkit deploy --to aiosmtpd`.")
@click.option("--hostname", default=None, help="Name in the banner and EHLO reply (default: the lineage's first name).")
@click.option("--max-connections", type=click.IntRange(1), default=200, show_default=True, metavar="N",
              help="Open connections in all (both listeners); past it a client gets 421 4.7.0.")
@click.option("--max-per-ip", type=click.IntRange(1), default=20, show_default=True, metavar="N",
              help="Open connections from one IPv4 address or IPv6 /64; past it 421 4.7.0.")
@click.option("--handshake-timeout", type=click.FloatRange(0.1, 300), default=10.0, show_default=True,
              metavar="SECONDS", help="A TLS handshake (STARTTLS or smtps) not done by then is closed.")
@click.option("--idle-timeout", type=click.FloatRange(1, 3600), default=300.0, show_default=True,
              metavar="SECONDS", help="A client that sends no command for this long is disconnected.")
@click.option("--auth-failures-per-ip", type=click.IntRange(0), default=10, show_default=True, metavar="N",
              help="Failed AUTH per IP (or /64) per --auth-window; then its AUTH and new connections get "
                   "421 4.7.0 until the window passes (0: no limit).")
@click.option("--auth-window", type=click.FloatRange(1), default=300.0, show_default=True, metavar="SECONDS",
              help="The window --auth-failures-per-ip counts over.")
@click.option("--auth-failures-per-connection", type=click.IntRange(0), default=3, show_default=True, metavar="N",
              help="Failed AUTH on one connection before 421 4.7.0 and disconnect (0: no limit).")
@click.option("--auth-delay", type=click.FloatRange(0, 60), default=0.5, show_default=True, metavar="SECONDS",
              help="Wait before answering the first failed AUTH of a connection; doubles with each failure.")
@click.pass_context
def smtpd_command(ctx: click.Context, /, listen: str | None, lineage: str | None, users_file: str | None,
                  maildir: str | None, relay: str | None, smtps_listen: str | None, pid_file: str | None,
                  hostname: str | None, **limits: Any) -> None:
    """Reference submission server on aiosmtpd (587, STARTTLS + AUTH).

    STARTTLS is required, AUTH PLAIN/LOGIN is offered only after TLS and
    required for MAIL; mail goes to --maildir or --relay. SIGHUP (or
    `certkit deploy LINEAGE --to aiosmtpd --pid-file F`) loads the lineage's
    new certificate for new connections without a restart; SIGTERM stops.

    Under attack: connections are capped (in all and per IP), TLS handshakes
    and idle clients time out, failed AUTH is answered ever more slowly, cut
    off after --auth-failures-per-connection and refused per IP after
    --auth-failures-per-ip; the users file must not be writable by others.
    """
    if ctx.invoked_subcommand is not None:
        return
    from certkit.cli.context import store_from

    missing = [flag for flag, value in (("--listen", listen), ("--cert", lineage), ("--users", users_file))
               if not value]
    if missing:
        raise UsageError(f"certkit smtpd needs {', '.join(missing)}",
                         "e.g. certkit smtpd --listen 0.0.0.0:587 --cert mail.example.com "
                         "--users /etc/certkit/smtpd-users --maildir /var/mail/certkit")
    if bool(maildir) == bool(relay):
        raise UsageError("say where accepted mail goes: exactly one of --maildir DIR or --relay HOST:PORT",
                         "e.g. --maildir /var/mail/certkit")
    from certkit.smtpd import limits as smtpd_limits
    from certkit.smtpd import server as smtpd
    from certkit.smtpd import tlsreload

    assert listen and lineage and users_file
    store = store_from(ctx)
    tls = tlsreload.ReloadableTLS.from_lineage(store.home, lineage)
    cfg = smtpd.ServerConfig(
        listen=smtpd.parse_hostport(listen, "--listen"),
        users_file=Path(users_file),
        tls=tls,
        maildir=Path(maildir) if maildir else None,
        relay=smtpd.parse_hostport(relay, "--relay") if relay else None,
        smtps_listen=smtpd.parse_hostport(smtps_listen, "--smtps-listen") if smtps_listen else None,
        pid_file=Path(pid_file) if pid_file else None,
        hostname=hostname or (store.load_settings(lineage).domains[0]),
        limits=smtpd_limits.Limits(**limits),
    )
    smtpd.run(cfg)


@smtpd_command.command("adduser")
@click.argument("users_file", metavar="FILE", type=click.Path(dir_okay=False))
@click.argument("user")
@click.option("--password-file", type=click.Path(dir_okay=False), default=None,
              help="Read the password from the first line of this file (else a hidden prompt).")
def adduser_command(users_file: str, user: str, password_file: str | None) -> None:
    """Add USER to the users FILE (or change the password), stored as a salted scrypt hash."""
    from certkit.secretfile import read_secret_file
    from certkit.smtpd import users as smtpd_users

    smtpd_users.check_username(user)
    if password_file:
        password = read_secret_file(password_file, "password")
    elif sys.stdin.isatty():
        # default="" makes an empty answer come back instead of a silent re-prompt: refuse it by name.
        password = click.prompt(f"Password for {user}", hide_input=True, confirmation_prompt=True, default="",
                                show_default=False)
        if not password:
            raise UsageError("an empty password was typed", "type the password, or pass --password-file FILE")
    else:
        raise UsageError("no password given and no terminal to ask on",
                         "pass --password-file FILE (the password on its first line)")
    new = smtpd_users.add_user(users_file, user, password)
    click.echo(f"{'Added' if new else 'Changed the password of'} {user} in {users_file} (scrypt, mode 0600). "
               f"A running certkit smtpd picks it up on SIGHUP.")
