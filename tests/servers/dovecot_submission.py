"""A private Dovecot 2.3 submission server (Debian dovecot-submissiond), as shipped, on 127.0.0.2.

Usable outside pytest::

    from tests.servers.dovecot_submission import start_dovecot_submission
    dv = start_dovecot_submission(folder, cert, key)     # root, dovecot-core + dovecot-submissiond
    ... dv.port, dv.url ...
    dv.stop()

What it needs (measured.md lists why):

* its own ``base_dir``, ``state_dir``, log file and ``instance_name``, in a
  0755 folder (login processes run as dovenull and must traverse it);
* a relay host: Dovecot submission forwards to an SMTP server after login;
  a plain aiosmtpd sink on 127.0.0.1 takes that role;
* the listener on 127.0.0.2: Dovecot treats a client whose address equals
  its own as secured and would offer AUTH before TLS. certkit connects from
  127.0.0.1 (the kernel's source address for the loopback net) and so sees
  what a remote client sees, including the empty ``250-AUTH `` before TLS;
* users in a passwd-file (PLAIN scheme, test credentials only).

Options switch one thing each: the certificate file served (full chain or
leaf alone), ``tls13_only`` (``ssl_min_protocol = TLSv1.3``) and
``client_ca`` (``ssl_verify_client_cert`` + ``auth_ssl_require_client_cert``:
Dovecot then completes the handshake and refuses every login without a
valid client certificate).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LISTEN = "127.0.0.2"
SUBMISSION = Path("/usr/lib/dovecot/submission")
USER, PASSWORD = "alice", "dovecot-test-pw"  # test-only credential

CONF = """\
# certkit test instance: Dovecot submission as shipped, plus what a private instance needs
protocols = submission
listen = {listen}
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
instance_name = certkit-submission-{port}
hostname = mail.example.test
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
{extra}
# submission opens the user's mail storage after login; it never writes there
mail_location = maildir:{base}/maildir
submission_relay_host = 127.0.0.1
submission_relay_port = {relay_port}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {base}/users
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}}
service submission-login {{
  inet_listener submission {{
    address = {listen}
    port = {port}
  }}
}}
service anvil {{
  chroot =
}}
"""


def unavailable_reason() -> str | None:
    """Why a private Dovecot submission cannot run here (None when it can)."""
    if os.geteuid() != 0:
        return "a private Dovecot instance needs root"
    if not shutil.which("dovecot") and not Path("/usr/sbin/dovecot").exists():
        return "dovecot is not installed (Debian: apt-get install dovecot-core dovecot-submissiond)"
    if not SUBMISSION.exists():
        return f"{SUBMISSION} is missing (Debian: apt-get install dovecot-submissiond)"
    with socket.socket() as probe:
        try:
            probe.bind((LISTEN, 0))
        except OSError:
            return f"cannot bind {LISTEN} (no 127.0.0.0/8 loopback route)"
    return None


def _free_port_on(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def _wait_listening(address: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((address, port), timeout=0.5):
            return True
        time.sleep(0.02)
    return False


@dataclass
class DovecotSubmission:
    """A running private Dovecot submission service."""

    base: Path
    port: int
    relay: Any  # the aiosmtpd Controller standing in for the relay host
    user: str = USER
    password: str = PASSWORD

    @property
    def url(self) -> str:
        return f"submission://{LISTEN}:{self.port}"

    @property
    def address(self) -> str:
        return f"{LISTEN}:{self.port}"

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.base / "dovecot.log").read_text(errors="replace")[-4000:]
        return ""

    def stop(self) -> None:
        """Stop Dovecot (SIGTERM to its master, waited for) and the relay sink; remove the folder."""
        with contextlib.suppress(OSError, ValueError):
            pid = int((self.base / "run" / "master.pid").read_text().strip())
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                os.kill(pid, 0)  # raises once it is gone
                time.sleep(0.02)
        with contextlib.suppress(Exception):
            self.relay.stop()
        shutil.rmtree(self.base, ignore_errors=True)


def _relay_sink() -> Any:
    """A plain aiosmtpd server that accepts whatever Dovecot relays (the "local sink")."""
    from aiosmtpd.controller import Controller

    class Sink:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 2.0.0 accepted by the test sink"

    controller = Controller(Sink(), hostname="127.0.0.1", port=_free_port_on("127.0.0.1"), ready_timeout=10)
    controller.start()
    return controller


def start_dovecot_submission(base: Path, cert: Path, key: Path, *, tls13_only: bool = False,
                             client_ca: Path | None = None) -> DovecotSubmission:
    """Start Dovecot submission serving ``cert`` (leaf first, PEM) on 127.0.0.2, a free port.

    Raises:
        RuntimeError: Dovecot did not start (the message carries its log).
    """
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)
    for sub in ("run", "state"):
        (base / sub).mkdir(exist_ok=True)
    (base / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    (base / "users").chmod(0o644)  # read by the auth process (the dovecot user)
    extra = []
    if tls13_only:
        extra.append("ssl_min_protocol = TLSv1.3")
    if client_ca is not None:
        # ssl_require_crl = no: the test client CA publishes no CRL (Dovecot's default demands one).
        extra += [f"ssl_ca = <{client_ca}", "ssl_verify_client_cert = yes", "auth_ssl_require_client_cert = yes",
                  "ssl_require_crl = no"]
    relay = _relay_sink()
    port = _free_port_on(LISTEN)
    conf = base / "dovecot.conf"
    conf.write_text(CONF.format(listen=LISTEN, base=base, port=port, cert=cert, key=key, extra="\n".join(extra),
                                relay_port=relay.port))
    server = DovecotSubmission(base, port, relay)
    # dovecot daemonizes; its children keep inherited pipes open, so output goes to a file.
    with open(base / "start.log", "wb") as out:
        code = subprocess.run(["dovecot", "-c", str(conf)], stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                              timeout=30).returncode
    if code != 0 or not _wait_listening(LISTEN, port, 10):
        text = (base / "start.log").read_text(errors="replace") + server.log()
        server.stop()
        raise RuntimeError(f"dovecot submission did not start (exit {code}): {text}")
    return server
