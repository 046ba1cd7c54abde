"""A private Postfix + Dovecot (SASL) instance on loopback ports, for tests and guides.

Usable outside pytest::

    from tests.servers.postfix import start_postfix
    pf = start_postfix()            # needs root, Debian postfix + dovecot-core
    ... pf.smtp_port, pf.submission_port, pf.config_dir, pf.users ...
    pf.stop()

or from a shell: ``python -m tests.servers.postfix`` starts one, prints its
details as JSON and stops it on Enter/Ctrl-C.

What it sets up (measured.md lists why each step is needed):

* a base folder under /tmp with mode 0755 (the postfix user must traverse
  every parent; a ``mktemp -d`` folder is 0700), holding ``etc/`` (main.cf,
  master.cf), ``queue/``, ``data/`` (owned by postfix), ``maillog`` and the
  Dovecot files;
* the config folder registered in the default main.cf's
  ``alternate_config_directories`` (``postfix -c DIR`` refuses it
  otherwise, silently when there is no syslog) - under a lock, because
  several test processes edit that one line; ``stop()`` removes it;
* ``maillog_file`` (there is no syslog here) with ``maillog_file_prefixes``
  covering it, and a ``postlog`` service;
* an SMTP service (the stand-in for port 25) on ``127.0.0.1:smtp_port``
  with no TLS yet, like a fresh Postfix; ``submission_port`` is a free port
  reserved for ``certkit deploy --setup-submission --submission-listen``;
* SASL through a private Dovecot auth service on an inet port
  (``smtpd_sasl_type = dovecot``, ``smtpd_sasl_path = inet:127.0.0.1:N``),
  users in a passwd-file; without a reachable SASL backend a submission
  smtpd dies and master throttles it for a minute;
* all mail is accepted then discarded (``default_transport = discard``), so
  a relay test leaves no queue behind; ``mynetworks`` is TEST-NET so
  127.0.0.1 is an outside client (no relay without AUTH anywhere).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.servers.net import free_port as _free_port
from tests.servers.net import wait_port as _wait_port

DEFAULT_MAIN_CF = Path("/etc/postfix/main.cf")
REGISTRY_LOCK = Path("/tmp/.certkit-test-postfix.lock")
USERS = {"alice": "alice-secret-pw", "bob": "bob-secret-pw"}

MASTER_CF = """\
# certkit test instance (chroot off: nothing to copy into a jail)
{smtp_service} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
local     unix  - n n - - local
virtual   unix  - n n - - virtual
lmtp      unix  - - n - - lmtp
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""

MAIN_CF = """\
# certkit test instance
compatibility_level = 3.6
queue_directory = {base}/queue
data_directory = {base}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = {hostname}
mydomain = test
myorigin = $myhostname
mydestination = $myhostname, localhost
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 192.0.2.1/32
default_transport = discard
relay_transport = discard
local_transport = discard
alias_maps =
alias_database =
biff = no
smtpd_banner = $myhostname ESMTP
maillog_file = {base}/maillog
maillog_file_prefixes = {base}
smtpd_sasl_type = dovecot
smtpd_sasl_path = inet:127.0.0.1:{sasl_port}
# Debian ships a snakeoil cert in these; certkit's smtpd_tls_chain_files must win over them.
smtpd_tls_cert_file =
smtpd_tls_key_file =
smtpd_tls_security_level = none
"""

DOVECOT_CONF = """\
# certkit test instance: SASL for Postfix only
protocols =
listen = 127.0.0.1
base_dir = {base}/dovecot/run
state_dir = {base}/dovecot/state
log_path = {base}/dovecot/dovecot.log
instance_name = certkit-test-{sasl_port}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {base}/dovecot/users
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}}
service auth {{
  inet_listener {{
    address = 127.0.0.1
    port = {sasl_port}
  }}
}}
service anvil {{
  chroot =
}}
"""




def _run(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def _date_back(*paths: Path) -> None:
    """Postfix will not read a config file younger than ~1 s (dict_load_file waits for it to
    settle); these files are complete, so date them back and save every start/reload that wait."""
    past = time.time() - 3
    for path in paths:
        os.utime(path, (past, past))


def unavailable_reason() -> str | None:
    """Why a private Postfix cannot run here (None when it can)."""
    if os.geteuid() != 0:
        return "a private Postfix instance needs root"
    for tool in ("postfix", "postconf", "dovecot"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} is not installed (Debian: apt-get install postfix dovecot-core)"
    if not DEFAULT_MAIN_CF.is_file():
        return f"{DEFAULT_MAIN_CF} is missing (postfix not configured)"
    return None


@contextlib.contextmanager
def _registry_lock() -> Iterator[None]:
    fd = os.open(REGISTRY_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _edit_alternate_dirs(add: str | None = None, remove: str | None = None) -> None:
    """Add/remove one folder in the default main.cf's alternate_config_directories.

    Entries whose folder is gone (a crashed run) are pruned on the way.
    """
    with _registry_lock():
        out = _run(["postconf", "-c", str(DEFAULT_MAIN_CF.parent), "-h", "alternate_config_directories"])
        current = [d for d in out.stdout.replace(",", " ").split() if d]
        wanted = [d for d in current if d != remove and (not d.startswith("/tmp/") or Path(d).is_dir())]
        if add and add not in wanted:
            wanted.append(add)
        if wanted != current:
            _run(["postconf", "-c", str(DEFAULT_MAIN_CF.parent), "-e",
                  "alternate_config_directories = " + " ".join(wanted)])
            _date_back(DEFAULT_MAIN_CF)  # else the next `postfix -c DIR start` waits ~2 s for it to settle


@dataclass
class PostfixInstance:
    """A running private Postfix + Dovecot.

    Attributes:
        base: the instance's folder (0755).
        config_dir: Postfix config folder (``-c DIR``; what certkit's --postfix-config-dir takes).
        smtp_port: the SMTP service (port-25 stand-in) on 127.0.0.1.
        submission_port: a free port for ``--submission-listen 127.0.0.1:PORT``.
        sasl_port: Dovecot's auth inet listener.
        hostname: Postfix's myhostname.
        users: SASL users and passwords.
    """

    base: Path
    config_dir: Path
    smtp_port: int
    submission_port: int
    sasl_port: int
    hostname: str
    users: dict[str, str] = field(default_factory=lambda: dict(USERS))
    _pristine: dict[str, bytes] = field(default_factory=dict, repr=False)

    @property
    def submission_listen(self) -> str:
        return f"127.0.0.1:{self.submission_port}"

    @property
    def maillog(self) -> Path:
        return self.base / "maillog"

    def log(self) -> str:
        """Postfix's and Dovecot's logs (for assertion messages)."""
        parts = []
        for path in (self.maillog, self.base / "dovecot" / "dovecot.log"):
            with contextlib.suppress(OSError):
                parts.append(f"== {path}\n" + path.read_text(errors="replace")[-4000:])
        return "\n".join(parts)

    def postconf(self, *args: str) -> str:
        """Run ``postconf -c DIR ARGS`` and return its stdout."""
        res = _run(["postconf", "-c", str(self.config_dir), *args])
        if res.returncode != 0:
            raise RuntimeError(f"postconf {' '.join(args)} failed: {res.stderr}")
        return res.stdout

    def reload(self) -> None:
        res = _run(["postfix", "-c", str(self.config_dir), "reload"])
        if res.returncode != 0:
            raise RuntimeError(f"postfix reload failed: {res.stdout}{res.stderr}\n{self.log()}")

    def reset(self) -> None:
        """Put main.cf and master.cf back as started (no TLS, no submission) and reload."""
        changed = False
        for fname, data in self._pristine.items():
            path = self.config_dir / fname
            if path.read_bytes() != data:
                path.write_bytes(data)
                _date_back(path)
                changed = True
        if changed:
            self.reload()

    def stop(self) -> None:
        """Stop Postfix and Dovecot, unregister and remove the folder."""
        _run(["postfix", "-c", str(self.config_dir), "stop"])
        pid_file = self.base / "dovecot" / "run" / "master.pid"
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
        _edit_alternate_dirs(remove=str(self.config_dir))
        shutil.rmtree(self.base, ignore_errors=True)


def _start_dovecot(base: Path, sasl_port: int, users: dict[str, str]) -> None:
    ddir = base / "dovecot"
    for sub in ("run", "state"):
        (ddir / sub).mkdir(parents=True, exist_ok=True)
    ddir.chmod(0o755)
    (ddir / "users").write_text("".join(f"{u}:{{PLAIN}}{p}\n" for u, p in users.items()))
    (ddir / "users").chmod(0o644)  # read by the auth process, which runs as the dovecot user
    conf = ddir / "dovecot.conf"
    conf.write_text(DOVECOT_CONF.format(base=base, sasl_port=sasl_port))
    # dovecot daemonizes; its child keeps inherited pipes open, so no capture here.
    with open(ddir / "start.log", "wb") as out:
        code = subprocess.run(["dovecot", "-c", str(conf)], stdout=out, stderr=out,
                              stdin=subprocess.DEVNULL, timeout=30).returncode
    if code != 0:
        raise RuntimeError(f"dovecot did not start: {(ddir / 'start.log').read_text(errors='replace')}")
    if not _wait_port(sasl_port, 10):
        raise RuntimeError(f"dovecot auth did not listen on {sasl_port}")


def start_postfix(hostname: str = "mail.certkit.test", base: Path | None = None) -> PostfixInstance:
    """Start a private Postfix + Dovecot SASL on free loopback ports.

    Args:
        hostname: Postfix's myhostname (the name a certificate should carry).
        base: folder for the instance (default: a new 0755 folder under /tmp).

    Raises:
        RuntimeError: something did not start (the message carries the logs).
    """
    reason = unavailable_reason()
    if reason:
        raise RuntimeError(reason)
    base = Path(base or tempfile.mkdtemp(prefix="certkit-postfix-", dir="/tmp"))
    base.chmod(0o755)
    config_dir = base / "etc"
    config_dir.mkdir(mode=0o755, exist_ok=True)
    (base / "queue").mkdir(mode=0o755, exist_ok=True)
    data = base / "data"
    data.mkdir(mode=0o700, exist_ok=True)
    shutil.chown(data, "postfix", "postfix")
    smtp_port, submission_port, sasl_port = _free_port(), _free_port(), _free_port()
    while len({smtp_port, submission_port, sasl_port}) < 3:
        submission_port, sasl_port = _free_port(), _free_port()
    inst = PostfixInstance(base, config_dir, smtp_port, submission_port, sasl_port, hostname)
    (config_dir / "main.cf").write_text(MAIN_CF.format(base=base, hostname=hostname, sasl_port=sasl_port))
    (config_dir / "master.cf").write_text(MASTER_CF.format(smtp_service=f"127.0.0.1:{smtp_port}"))
    inst._pristine = {f: (config_dir / f).read_bytes() for f in ("main.cf", "master.cf")}
    _date_back(config_dir / "main.cf", config_dir / "master.cf")
    (base / "maillog").touch()
    try:
        _start_dovecot(base, sasl_port, inst.users)
        _edit_alternate_dirs(add=str(config_dir))
        res = _run(["postfix", "-c", str(config_dir), "start"])
        if res.returncode != 0 or not _wait_port(smtp_port, 15):
            raise RuntimeError(f"postfix did not start: {res.stdout}{res.stderr}\n{inst.log()}")
    except BaseException:
        inst.stop()
        raise
    return inst


@pytest.fixture(scope="session")
def postfix_session() -> Iterator[PostfixInstance]:
    """One private Postfix + Dovecot for the whole session (skips when it cannot run)."""
    from tests.conftest import skip_or_fail

    reason = unavailable_reason()
    if reason:
        skip_or_fail(reason)
    try:
        inst = start_postfix()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        skip_or_fail(f"cannot start a private Postfix: {exc}")
        raise  # unreachable; keeps type checkers happy
    try:
        yield inst
    finally:
        inst.stop()


@pytest.fixture
def postfix(postfix_session: PostfixInstance) -> Iterator[PostfixInstance]:
    """The session's Postfix, reset to its pristine config (no TLS, no submission) for this test."""
    postfix_session.reset()
    yield postfix_session


if __name__ == "__main__":
    instance = start_postfix()
    print(json.dumps({
        "config_dir": str(instance.config_dir),
        "smtp_port": instance.smtp_port,
        "submission_port": instance.submission_port,
        "sasl_port": instance.sasl_port,
        "hostname": instance.hostname,
        "users": instance.users,
    }, indent=2))
    try:
        input("running; press Enter to stop\n")
    except (KeyboardInterrupt, EOFError):
        pass
    finally:
        instance.stop()
