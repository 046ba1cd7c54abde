"""Real OpenSSH servers on loopback ports, as Ansible managed hosts.

``start_sshd(folder)`` makes a host key, a client key allowed to log in as
the current user and an sshd_config of its own (key authentication only,
no PAM, StrictModes off because the files live in a pytest temp folder),
then runs ``sshd -D -e -f CONFIG`` on a free 127.0.0.1 port. ``known_hosts``
lines for every server let ssh keep StrictHostKeyChecking on.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.servers.net import free_port, wait_port

SSHD = "/usr/sbin/sshd"


@dataclass
class Sshd:
    """One running sshd and what a client needs to reach it."""

    proc: subprocess.Popen[bytes]
    port: int
    folder: Path
    client_key: Path
    host_public_key: str
    user: str

    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {self.host_public_key}"

    def log(self) -> str:
        return (self.folder / "sshd.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def available() -> str | None:
    """Why sshd cannot run here, or None."""
    if not os.path.exists(SSHD) or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        return "OpenSSH not installed (Debian openssh-server, openssh-client)"
    return None


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "certkit-test", "-f", str(path)],
                   check=True, capture_output=True)
    return path.with_suffix(".pub").read_text().strip()


def start_sshd(folder: Path, client_key: Path, timeout: float = 15.0) -> Sshd:
    """An sshd in ``folder`` that lets ``client_key`` (made when missing) log in as the current user."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    if not client_key.exists():
        keygen(client_key)
    host_key = folder / "host_ed25519"
    host_public = keygen(host_key)
    authorized = folder / "authorized_keys"
    authorized.write_text(client_key.with_suffix(".pub").read_text())
    os.chmod(authorized, 0o600)
    if os.geteuid() == 0:
        # sshd's privilege separation folder (the Debian service creates it at boot).
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    port = free_port()
    user = getpass.getuser()
    config = folder / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}", f"PidFile {folder / 'sshd.pid'}",
        f"AuthorizedKeysFile {authorized}", "PubkeyAuthentication yes", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no", f"AllowUsers {user}",
        "PermitRootLogin prohibit-password", "Subsystem sftp internal-sftp", "LogLevel INFO", "MaxStartups 50:30:100",
        "",
    ]))
    log = open(folder / "sshd.log", "wb")  # the server keeps writing to it
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    log.close()
    server = Sshd(proc, port, folder, client_key, " ".join(host_public.split()[:2]), user)
    if not wait_port(port, timeout) or proc.poll() is not None:
        server.stop()
        raise RuntimeError(f"sshd did not start:\n{server.log()}")
    return server
