"""`certkit smtpd` under attack, for real: a brute forcer, a flood, stalled handshakes,
a users file others can write, a forged authorisation identity (issue 10, items 12-15).

Every test runs a real `certkit smtpd` process and attacks it over loopback
sockets; a second client binds 127.0.0.2 to stand for "another IP address".
Assertions are about replies, counts and EOFs, never about how fast.
"""

from __future__ import annotations

import base64
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from certkit.smtpd import limits as smtpd_limits
from tests.servers.smtpd import LineClient as Client
from tests.servers.smtpd import SmtpdServer, certkit_argv, child_env, issue_lineage, start_smtpd
from tests.servers.smtpd import auth_plain as plain

OTHER_IP = "127.0.0.2"
WAIT = 20.0  # socket timeout: only stops a broken test from hanging


@pytest.fixture
def lineage_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    issue_lineage(home)
    return home


@pytest.fixture
def server_factory() -> Iterator[list[SmtpdServer]]:
    """Servers started by a test, stopped after it."""
    started: list[SmtpdServer] = []
    yield started
    for srv in started:
        srv.stop()


def start(started: list[SmtpdServer], home: Path, tmp_path: Path, *extra: str) -> SmtpdServer:
    srv = start_smtpd(home, "mail.test", tmp_path / "smtpd", extra=extra)
    started.append(srv)
    return srv


def test_brute_forcer_on_one_connection_is_cut_off(server_factory: list[SmtpdServer], lineage_home: Path,
                                                   tmp_path: Path) -> None:
    srv = start(server_factory, lineage_home, tmp_path)
    client = Client(srv.port)
    client.starttls()
    replies = [client.cmd(plain(srv.user, f"guess-{n}")) for n in range(3)]
    assert replies[0].startswith("535 5.7.8") and replies[1].startswith("535 5.7.8")
    assert replies[2] == "421 4.7.0 Too many failed AUTH attempts"
    assert client.at_eof()
    client.close()
    log = srv.wait_log("3 failures on this connection; disconnected")
    assert "guess-" not in log and srv.password not in log
    # The right password still works on a new connection (3 < --auth-failures-per-ip).
    client = Client(srv.port)
    client.starttls()
    assert client.cmd(plain(srv.user, srv.password)).startswith("235")
    client.close()


def brute_force(port: int, user: str, guesses: int, replies: list[str]) -> None:
    """One brute-force connection: wrong passwords until cut off (replies collected)."""
    client = Client(port)
    try:
        client.starttls()
        for n in range(guesses):
            reply = client.cmd(plain(user, f"wrong-{n}"))
            replies.append(reply[:3] or "EOF")
            if not reply.startswith("535"):
                return
    finally:
        client.close()


def test_many_connections_from_one_ip_hit_the_per_ip_limit(server_factory: list[SmtpdServer],
                                                           lineage_home: Path, tmp_path: Path) -> None:
    srv = start(server_factory, lineage_home, tmp_path, "--auth-failures-per-ip", "6",
                "--auth-failures-per-connection", "0")
    waiting = Client(srv.port)  # a connection from the same address, opened before the attack
    waiting.starttls()
    replies: list[str] = []
    threads = [threading.Thread(target=brute_force, args=(srv.port, srv.user, 50, replies)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 8 connections x 50 guesses, yet only the first 5 failures got a 535; the 6th and
    # every later attempt from 127.0.0.1 got 421 and a closed connection.
    assert replies.count("535") == 5, replies
    assert replies.count("421") == 8 and len(replies) <= 6 + 8, replies
    # Even the right password is refused from that address now, on an open connection...
    assert waiting.cmd(plain(srv.user, srv.password)) == "421 4.7.0 Too many failed AUTH attempts"
    assert waiting.at_eof()
    waiting.close()
    # ...and a new connection from it is turned away before TLS,
    client = Client(srv.port)
    assert client.reply() == "421 4.7.0 Too many failed AUTH attempts" and client.at_eof()
    client.close()
    # while a client from another address logs in.
    other = Client(srv.port, OTHER_IP)
    other.starttls()
    assert other.cmd(plain(srv.user, srv.password)).startswith("235 2.7.0")
    other.close()
    log = srv.log()
    assert log.count("127.0.0.1 reached --auth-failures-per-ip 6: further AUTH refused for 300 s") == 1
    assert log.count("127.0.0.1 is over --auth-failures-per-ip 6") == 1  # refusals logged once, not per attempt
    assert 6 <= log.count(" FAILED") <= len(replies)  # one line per guess evaluated, none per refusal


def slow_user_line(user: str) -> str:
    """A users-file entry whose scrypt costs p=60 times the usual (~2 s here): on the event
    loop, 32 attempts at it would stall every other client for about a minute."""
    salt = base64.b64encode(b"s" * 16).decode()
    digest = base64.b64encode(b"h" * 32).decode()
    return f"{user}:scrypt$16384$8$60${salt}${digest}\n"


def test_ehlo_answered_during_a_32_connection_brute_force(server_factory: list[SmtpdServer],
                                                          lineage_home: Path, tmp_path: Path) -> None:
    srv = start(server_factory, lineage_home, tmp_path, "--max-per-ip", "64")
    with open(srv.users_file, "a", encoding="utf-8") as users:
        users.write(slow_user_line("slow@example.test"))
    srv.hup()
    srv.wait_log("users file reloaded: 2 user(s)")
    normal = Client(srv.port, OTHER_IP)  # a normal client, from another address
    assert normal.reply().startswith("220 mail.test")
    attackers: list[Client] = []
    for _ in range(32):
        client = Client(srv.port)
        client.starttls()
        attackers.append(client)
    for client in attackers:  # 32 guesses (about a minute of hashing) arrive at once...
        client.sock.sendall((plain("slow@example.test", "guess") + "\r\n").encode())
    # ...and then the normal client's EHLO: answered at once (on the event loop it queued
    # behind the 32 hashes and waited about a minute).
    for _ in range(3):
        assert normal.cmd("EHLO client.test").startswith("250-mail.test")
    assert normal.cmd("QUIT").startswith("221")
    normal.close()
    for client in attackers:
        client.close()


def test_connection_caps_answer_421(server_factory: list[SmtpdServer], lineage_home: Path,
                                    tmp_path: Path) -> None:
    srv = start(server_factory, lineage_home, tmp_path, "--max-per-ip", "3", "--max-connections", "5")
    first = [Client(srv.port) for _ in range(3)]
    assert all(c.reply().startswith("220") for c in first)
    over_ip = Client(srv.port)
    assert over_ip.reply() == "421 4.7.0 Too many connections, try again later" and over_ip.at_eof()
    others = [Client(srv.port, OTHER_IP) for _ in range(2)]
    assert all(c.reply().startswith("220") for c in others)
    over_all = Client(srv.port, "127.0.0.3")
    assert over_all.reply() == "421 4.7.0 Too many connections, try again later" and over_all.at_eof()
    smtps = Client(srv.smtps_port or 0, "127.0.0.3")
    assert smtps.at_eof()  # the smtps port closes without a reply (a TLS client could not read it)
    log = srv.log()
    assert "refused: 3 connections already open from 127.0.0.1 (--max-per-ip)" in log
    assert "refused: 5 connections already open (--max-connections)" in log
    # A closed connection gives its slot back.
    first[0].cmd("QUIT")
    first[0].close()
    again = admitted_after_release(srv.port)
    assert again.startswith("220")
    for c in [*first[1:], *others, over_ip, over_all, smtps]:
        c.close()


def admitted_after_release(port: int) -> str:
    """The banner of a new connection once the server has processed an earlier close."""
    reply = ""
    for _ in range(200):
        client = Client(port)
        reply = client.reply()
        client.close()
        if reply.startswith("220"):
            return reply
        threading.Event().wait(0.02)
    return reply


def test_stalled_tls_handshakes_are_closed_and_their_slots_released(server_factory: list[SmtpdServer],
                                                                     lineage_home: Path, tmp_path: Path) -> None:
    srv = start(server_factory, lineage_home, tmp_path, "--handshake-timeout", "0.5", "--max-connections", "4")
    stalled_starttls = []
    for _ in range(2):
        client = Client(srv.port)
        assert client.reply().startswith("220")
        assert client.cmd("EHLO client.test").startswith("250")
        assert client.cmd("STARTTLS").startswith("220")
        stalled_starttls.append(client)  # ... and never sends a ClientHello
    stalled_smtps = [Client(srv.smtps_port or 0) for _ in range(2)]  # connect, say nothing
    for client in stalled_starttls + stalled_smtps:
        assert client.at_eof()  # the server hung up (asyncio's defaults waited 30-60 s)
        client.close()
    log = srv.wait_log("implicit TLS failed: no TLS handshake within 0.5 s")
    assert "STARTTLS failed: ConnectionAbortedError: no TLS handshake within 0.5 s" in log
    assert "Traceback" not in log
    # All four slots came back: a normal client gets in and logs in.
    assert admitted_after_release(srv.port).startswith("220")
    client = Client(srv.port)
    client.starttls()
    assert client.cmd(plain(srv.user, srv.password)).startswith("235")
    client.close()


def test_idle_client_is_disconnected(server_factory: list[SmtpdServer], lineage_home: Path,
                                     tmp_path: Path) -> None:
    srv = start(server_factory, lineage_home, tmp_path, "--idle-timeout", "1", "--max-connections", "1")
    client = Client(srv.port)
    assert client.reply().startswith("220")
    assert client.at_eof()  # said nothing after the banner: closed (aiosmtpd's default waits 300 s)
    client.close()
    assert admitted_after_release(srv.port).startswith("220")  # and its slot is free again


def run_smtpd(home: Path, users: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    argv = certkit_argv(home, "smtpd", "--listen", "127.0.0.1:0", "--cert", "mail.test", "--users", str(users),
                        "--maildir", str(tmp_path / "Maildir"))
    try:
        return subprocess.run(argv, capture_output=True, text=True, env=child_env(), timeout=WAIT)
    except subprocess.TimeoutExpired:
        pytest.fail("certkit smtpd started with a users file it must refuse")


def users_file(home: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "conf"
    folder.mkdir(mode=0o700)
    password = tmp_path / "pw"
    password.write_text("s3cret\n")
    users = folder / "users"
    subprocess.run(certkit_argv(home, "smtpd", "adduser", str(users), "alice", "--password-file", str(password)),
                   check=True, capture_output=True, env=child_env())
    return users


@pytest.mark.parametrize("mode", [0o666, 0o620, 0o602], ids=["0666", "0620", "0602"])
def test_users_file_writable_by_others_is_refused(lineage_home: Path, tmp_path: Path, mode: int) -> None:
    users = users_file(lineage_home, tmp_path)
    os.chmod(users, mode)
    proc = run_smtpd(lineage_home, users, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert f"users file {users} is writable by group or others (mode {mode:04o})" in proc.stderr
    assert f"chmod 600 {users}" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="the ownership rule applies to root")
def test_root_refuses_a_users_file_owned_by_nobody(lineage_home: Path, tmp_path: Path) -> None:
    import pwd

    nobody = pwd.getpwnam("nobody")
    users = users_file(lineage_home, tmp_path)
    os.chown(users, nobody.pw_uid, nobody.pw_gid)  # mode stays 0600: nobody alone can write it
    proc = run_smtpd(lineage_home, users, tmp_path)
    assert proc.returncode == 2 and f"is owned by uid {nobody.pw_uid}, not root" in proc.stderr, proc.stderr
    assert f"chown root:root {users}" in proc.stderr
    # The file is root's again, but nobody owns the folder: it could swap the file.
    os.chown(users, 0, 0)
    os.chown(users.parent, nobody.pw_uid, nobody.pw_gid)
    proc = run_smtpd(lineage_home, users, tmp_path)
    assert proc.returncode == 2 and "folder of the users file" in proc.stderr, proc.stderr


def test_users_file_made_writable_is_not_reloaded(server_factory: list[SmtpdServer], lineage_home: Path,
                                                  tmp_path: Path) -> None:
    srv = start(server_factory, lineage_home, tmp_path)
    os.chmod(srv.users_file, 0o666)
    srv.hup()
    log = srv.wait_log("users file NOT reloaded, keeping 1 user(s)")
    assert "writable by group or others" in log and srv.proc.poll() is None


def test_auth_plain_authorisation_identity_must_be_the_user(server_factory: list[SmtpdServer],
                                                            lineage_home: Path, tmp_path: Path) -> None:
    srv = start(server_factory, lineage_home, tmp_path)
    cases = [("bob@example.test", "535 5.7.8"), (srv.user, "235 2.7.0"), ("", "235 2.7.0")]
    for authzid, expected in cases:
        client = Client(srv.port)
        client.starttls()
        reply = client.cmd(plain(srv.user, srv.password, authzid))
        assert reply.startswith(expected), (authzid, reply)
        client.close()
    assert "authorization identity differs from the user" in srv.log()


def test_limits_in_memory() -> None:
    """The counters the server consults, with an injected clock."""
    now = [1000.0]
    limits = smtpd_limits.Limits(auth_failures_per_ip=3, auth_window=60, auth_delay=0.5, max_per_ip=2,
                                 max_connections=3)
    assert [limits.delay_after(n) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    table = smtpd_limits.FailureTable(limits, clock=lambda: now[0])
    assert [table.record("192.0.2.1") for _ in range(3)] == [1, 2, 3]
    assert table.blocked("192.0.2.1") and not table.blocked("192.0.2.2")
    now[0] += 61
    assert not table.blocked("192.0.2.1")
    gate = smtpd_limits.ConnectionGate(limits)
    assert gate.admit("a") is None and gate.admit("a") is None
    assert "--max-per-ip" in (gate.admit("a") or "")
    assert gate.admit("b") is None and "--max-connections" in (gate.admit("c") or "")
    gate.release("a")
    assert gate.admit("c") is None
    key = smtpd_limits.client_key
    assert key("2001:db8::1") == key("2001:db8::ffff:1") == "2001:db8::/64"
    assert key("::ffff:192.0.2.7") == "192.0.2.7" and key("192.0.2.7") == "192.0.2.7"
    lines: list[str] = []
    refusals = smtpd_limits.RefusalLog(lines.append, window=60, clock=lambda: now[0])
    for _ in range(5):
        refusals.refused("a", "connections", "refused a")
    now[0] += 61
    refusals.refused("a", "connections", "refused a")
    assert lines == ["refused a", "refused a (4 more refused since the last line)"]
