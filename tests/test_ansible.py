"""The Ansible collection certkit.mail: build, ansible-doc, ansible-test sanity, and a fleet over real SSH.

The fleet test starts three OpenSSH servers on loopback ports as three
managed hosts (each with its own certkit --home), installs the collection
from the tarball `ansible-galaxy collection build` made, and runs
tests/ansible/fleet.yml with ansible-playbook over ssh: issue, deploy to a
certkit smtpd, renew, check. The third host's mail server is a legacy MTA
without STARTTLS: its check FAILs and only that host is reported failed.
A second run changes nothing; a check-mode run shows the diff of a new name
and issues nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import skip_or_fail
from tests.servers import sshd as sshd_server
from tests.servers.net import accept_in_threads, free_port
from tests.servers.smtpd import PASSWORD, REPO

pytestmark = pytest.mark.integration

COLLECTION = REPO / "ansible"
MODULES = ("certkit_issue", "certkit_deploy", "certkit_renew", "certkit_check")
# ansible-test sanity tests that need no virtual environment of their own (nothing downloaded).
OFFLINE_SANITY = ("action-plugin-docs", "changelog", "compile", "empty-init", "ignores", "line-endings", "no-assert",
                  "no-get-exception", "no-illegal-filenames", "no-smart-quotes", "replace-urlopen", "shebang",
                  "shellcheck", "symlinks", "use-argspec-type-path", "use-compat-six")
# These build a virtual environment with pinned requirements from a package index first.
VENV_SANITY = ("ansible-doc", "import", "pep8", "pylint", "runtime-metadata", "validate-modules", "yamllint")


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        skip_or_fail(f"{name} not installed (pip ansible-core)")
    return str(path)


@pytest.fixture(scope="module")
def collections_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The collection built with ansible-galaxy and installed from its tarball."""
    out = tmp_path_factory.mktemp("galaxy")
    build = subprocess.run([tool("ansible-galaxy"), "collection", "build", str(COLLECTION), "--output-path",
                            str(out)], capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, build.stdout + build.stderr
    tarball = out / "certkit-mail-0.1.0.tar.gz"
    assert tarball.is_file()
    installed = out / "collections"
    inst = subprocess.run([tool("ansible-galaxy"), "collection", "install", str(tarball), "-p", str(installed)],
                          capture_output=True, text=True, timeout=120)
    assert inst.returncode == 0, inst.stdout + inst.stderr
    return installed


def ansible_env(collections: Path, tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the managed hosts get nothing from the controller's environment
    env.update(ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-local"),
               ANSIBLE_REMOTE_TEMP=str(tmp / "ansible-remote"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_PIPELINING="1", ANSIBLE_HOST_KEY_CHECKING="1", ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_SSH_CONTROL_PATH_DIR=str(tmp / "cp"), ANSIBLE_DEPRECATION_WARNINGS="0")
    return env


def test_ansible_doc_shows_every_module(collections_path: Path, tmp_path: Path) -> None:
    env = ansible_env(collections_path, tmp_path)
    listing = subprocess.run([tool("ansible-doc"), "-l", "certkit.mail"], capture_output=True, text=True, env=env,
                             timeout=120)
    assert all(f"certkit.mail.{m}" in listing.stdout for m in MODULES), listing.stdout + listing.stderr
    docs = subprocess.run([tool("ansible-doc"), "--json", *[f"certkit.mail.{m}" for m in MODULES]],
                          capture_output=True, text=True, env=env, timeout=120)
    assert docs.returncode == 0, docs.stderr
    parsed = json.loads(docs.stdout)
    options = {m: set(parsed[f"certkit.mail.{m}"]["doc"]["options"]) for m in MODULES}
    returns = {m: set(parsed[f"certkit.mail.{m}"]["return"]) for m in MODULES}
    assert {"cn", "san", "key", "home", "acme", "executable"} <= options["certkit_issue"]
    assert {"url", "name", "cafile", "expect", "home", "executable"} <= options["certkit_check"]
    assert {"lineage", "to", "verify", "pid_file"} <= options["certkit_deploy"]
    assert "lineage" in returns["certkit_issue"] and "checks" in returns["certkit_check"]
    assert "server" in parsed["certkit.mail.certkit_issue"]["doc"]["options"]["acme"]["suboptions"]
    text = subprocess.run([tool("ansible-doc"), "certkit.mail.certkit_check"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert "fails when any check FAILs" in " ".join(text.stdout.split())
    role = subprocess.run([tool("ansible-doc"), "-t", "role", "certkit.mail.submission"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert role.returncode == 0 and "certkit_submission_cn" in role.stdout, role.stderr


def _sanity_tree(tmp: Path) -> Path:
    """ansible-test wants the collection at .../ansible_collections/NAMESPACE/NAME (and a git tree)."""
    where = tmp / "ansible_collections" / "certkit" / "mail"
    shutil.copytree(COLLECTION, where)
    subprocess.run(["git", "init", "-q", str(where)], check=True)
    return where


def _sanity(where: Path, tests: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    argv = [tool("ansible-test"), "sanity", "--python", f"{sys.version_info.major}.{sys.version_info.minor}",
            "--local", "--color", "no"]
    for name in tests:
        argv += ["--test", name]
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return subprocess.run(argv, cwd=where, capture_output=True, text=True, env=env, timeout=900)


def test_ansible_test_sanity_offline(tmp_path: Path) -> None:
    result = _sanity(_sanity_tree(tmp_path), OFFLINE_SANITY)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    for name in ("compile", "shebang", "use-argspec-type-path"):
        assert f'Running sanity test "{name}"' in result.stdout


@pytest.mark.slow
def test_ansible_test_sanity_with_its_requirements(tmp_path: Path) -> None:
    """validate-modules, pylint, pep8, yamllint... (each first installs its pinned requirements)."""
    result = _sanity(_sanity_tree(tmp_path), VENV_SANITY)
    said = result.stdout + result.stderr
    if any(why in said for why in ("Download failed", "does not have pip available", "pip is unavailable")):
        skip_or_fail("ansible-test could not build its sanity virtual environments (no pip bootstrap/index)")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


# ----- a fleet over SSH ------------------------------------------------------------------------

@dataclass
class Host:
    name: str
    sshd: sshd_server.Sshd
    home: Path
    workdir: Path
    smtpd_port: int
    mta: str


def legacy_mta(listener: socket.socket) -> None:
    """A mail server that never learnt TLS: no STARTTLS, AUTH offered in clear."""
    def handle(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(10)
            conn.sendall(b"220 legacy.mail.test ESMTP\r\n")
            reader = conn.makefile("rb")
            for line in reader:
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    conn.sendall(b"250-legacy.mail.test\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n")
                elif verb == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"502 5.5.1 not implemented\r\n")

    accept_in_threads(listener, handle)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[list[Host]]:
    why = sshd_server.available()
    if why:
        skip_or_fail(why)
    client_key = tmp_path / "id_ed25519"
    hosts: list[Host] = []
    legacy = socket.socket()
    legacy.bind(("127.0.0.1", 0))
    legacy.listen(16)
    legacy_mta(legacy)
    try:
        for i, mta in enumerate(("certkit-smtpd", "certkit-smtpd", "legacy"), start=1):
            folder = tmp_path / f"host{i}"
            workdir = folder / "work"
            workdir.mkdir(parents=True)
            os.chmod(workdir, 0o700)
            (workdir / "password").write_text(PASSWORD + "\n")
            hook = workdir / "install-cert.sh"  # the legacy MTA's deploy: copy the files it never uses for TLS
            hook.write_text('#!/bin/sh\ncp "$CERTKIT_FULLCHAIN" "$CERTKIT_KEY" "$(dirname "$0")/"\n')
            os.chmod(hook, 0o700)
            port = free_port() if mta == "certkit-smtpd" else legacy.getsockname()[1]
            server = sshd_server.start_sshd(folder / "sshd", client_key)
            hosts.append(Host(f"host{i}", server, folder / "home", workdir, port, mta))
        yield hosts
    finally:
        for host in hosts:
            _stop_pid_file(host.workdir / "smtpd.pid")
            host.sshd.stop()
        legacy.close()


def _stop_pid_file(path: Path) -> None:
    with contextlib.suppress(OSError, ValueError):
        pid = int(path.read_text().split()[0])
        os.kill(pid, 15)


def certkit_wrapper(tmp: Path) -> Path:
    """The certkit command on the managed hosts: this checkout, whatever environment ssh gives."""
    wrapper = tmp / "certkit"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m certkit "$@"\n')
    os.chmod(wrapper, 0o755)
    return wrapper


def inventory(tmp: Path, hosts: list[Host]) -> Path:
    known = tmp / "known_hosts"
    known.write_text("".join(h.sshd.known_hosts_line() + "\n" for h in hosts))
    wrapper = certkit_wrapper(tmp)
    lines = ["[mail]"]
    for h in hosts:
        lines.append(f"{h.name} ansible_host=127.0.0.1 ansible_port={h.sshd.port} certkit_home={h.home} "
                     f"workdir={h.workdir} smtpd_port={h.smtpd_port} mta={h.mta}")
    lines += ["", "[mail:vars]", "ansible_connection=ssh", f"ansible_user={hosts[0].sshd.user}",
              f"ansible_ssh_private_key_file={hosts[0].sshd.client_key}",
              f"ansible_python_interpreter={sys.executable}", f"certkit_exe={wrapper}",
              f"ansible_ssh_common_args='-o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes "
              "-o ControlMaster=no -o BatchMode=yes'"]
    path = tmp / "inventory.ini"
    path.write_text("\n".join(lines) + "\n")
    return path


RECAP = re.compile(r"^(host\d)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def playbook(collections: Path, tmp: Path, inv: Path, *extra: str) -> tuple[dict[str, dict[str, int]], str]:
    result = subprocess.run([tool("ansible-playbook"), "-i", str(inv), str(REPO / "tests" / "ansible" / "fleet.yml"),
                             *extra], capture_output=True, text=True, env=ansible_env(collections, tmp), timeout=600)
    recap = {m[0]: {"ok": int(m[1]), "changed": int(m[2]), "unreachable": int(m[3]), "failed": int(m[4])}
             for m in RECAP.findall(result.stdout)}
    assert recap, result.stdout[-6000:] + result.stderr[-3000:]
    return recap, result.stdout + result.stderr


def served_sha256(port: int) -> str:
    """The served certificate's fingerprint, read with openssl s_client (not certkit)."""
    proc = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-starttls", "smtp"],
                          input=b"", capture_output=True, timeout=30)
    pem = re.search(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", proc.stdout, re.S)
    assert pem, proc.stdout[-2000:]
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem.group(0).decode())).hexdigest()


def show(host: Host) -> dict[str, Any]:
    from tests.servers.smtpd import certkit_argv, child_env

    out = subprocess.run(certkit_argv(host.home, "show", f"{host.name}.mail.test", "--json"), capture_output=True,
                         text=True, check=True, env=child_env())
    return dict(json.loads(out.stdout))


def test_playbook_over_ssh_issues_deploys_renews_and_checks_three_hosts(
        fleet: list[Host], collections_path: Path, tmp_path: Path) -> None:
    inv = inventory(tmp_path, fleet)
    recap, output = playbook(collections_path, tmp_path, inv, "-e", "renew_force=true")
    good, broken = fleet[:2], fleet[2]
    for host in good:
        assert recap[host.name]["failed"] == 0 and recap[host.name]["unreachable"] == 0, output[-6000:]
        record = show(host)
        assert record["versions"] == [1, 2]  # issued, then renewed (forced) - and renew deployed it again
        assert served_sha256(host.smtpd_port) == record["sha256"]
        assert record["last_renewal"]["ok"] is True
    assert recap[broken.name]["failed"] == 1, output[-6000:]
    assert "starttls-offered" in output  # the legacy MTA's FAIL, named in the failed task's message
    assert show(broken)["versions"] == [1, 2]  # certificate and deploy worked; only its server is broken
    assert (broken.workdir / "fullchain.pem").is_file()

    again, output = playbook(collections_path, tmp_path, inv)
    for host in fleet:
        assert again[host.name]["changed"] == 0, output[-6000:]
    assert [again[h.name]["failed"] for h in fleet] == [0, 0, 1]
    assert [show(h)["versions"] for h in fleet] == [[1, 2]] * 3  # nothing issued twice

    checked, output = playbook(collections_path, tmp_path, inv, "--check", "--diff", "--limit", "host1",
                               "-e", '{"extra_san": ["smtp.host1.mail.test"]}')
    assert checked["host1"]["changed"] >= 1 and checked["host1"]["failed"] == 0, output[-6000:]
    assert '+        "smtp.host1.mail.test"' in output  # --diff: the name the certificate would gain
    assert show(fleet[0])["versions"] == [1, 2]  # check mode issued nothing


@pytest.mark.postfix
def test_role_submission_sets_up_postfix_587_over_ssh(postfix: Any, collections_path: Path, tmp_path: Path) -> None:
    why = sshd_server.available()
    if why:
        skip_or_fail(why)
    server = sshd_server.start_sshd(tmp_path / "sshd", tmp_path / "id_ed25519")
    try:
        home, units = tmp_path / "home", tmp_path / "units"
        units.mkdir()
        known = tmp_path / "known_hosts"
        known.write_text(server.known_hosts_line() + "\n")
        inv = tmp_path / "inventory.ini"
        inv.write_text("\n".join([
            "[mail]",
            f"mx ansible_host=127.0.0.1 ansible_port={server.port}",
            "[mail:vars]",
            "ansible_connection=ssh", f"ansible_user={server.user}",
            f"ansible_ssh_private_key_file={server.client_key}",
            f"ansible_python_interpreter={sys.executable}",
            f"ansible_ssh_common_args='-o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes -o ControlMaster=no'",
            f"certkit_submission_executable={certkit_wrapper(tmp_path)}", f"certkit_submission_home={home}",
            "certkit_submission_cn=mail.certkit.test", "certkit_submission_san=127.0.0.1",
            "certkit_submission_key=ec256", f"certkit_submission_postfix_config_dir={postfix.config_dir}",
            f"certkit_submission_listen={postfix.submission_listen}", "certkit_submission_check_host=127.0.0.1",
            f"certkit_submission_check_port={postfix.submission_port}", "certkit_submission_timer_kind=systemd",
            f"certkit_submission_timer_unit_dir={units}", "",
        ]))
        argv = [tool("ansible-playbook"), "-i", str(inv), str(REPO / "tests" / "ansible" / "submission-role.yml")]
        env = ansible_env(collections_path, tmp_path)
        first = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
        recap = {m[0]: (int(m[2]), int(m[4])) for m in re.findall(
            r"^(\w+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", first.stdout, re.M)}
        assert first.returncode == 0 and recap["mx"][1] == 0, first.stdout[-6000:] + first.stderr[-2000:]
        assert recap["mx"][0] == 3  # certificate, Postfix submission, timer (the check changes nothing)
        from tests.servers.smtpd import certkit_argv, child_env

        record = json.loads(subprocess.run(certkit_argv(home, "show", "mail.certkit.test", "--json"),
                                           capture_output=True, text=True, check=True, env=child_env()).stdout)
        assert served_sha256(postfix.submission_port) == record["sha256"]  # Postfix on the submission port serves it
        assert (units / "certkit-renew.timer").is_file() and (units / "certkit-renew.service").is_file()
        assert str(home) in (units / "certkit-renew.service").read_text()  # the --home in use is baked in
        again = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
        assert again.returncode == 0 and re.search(r"^mx\s*:\s*ok=5\s+changed=0\s", again.stdout, re.M), \
            again.stdout[-6000:]
    finally:
        server.stop()


@pytest.mark.pebble
def test_issue_module_with_acme_settings_is_idempotent(pebble: Any, collections_path: Path, tmp_path: Path) -> None:
    """certkit_issue's acme options reach `certkit issue --acme` (real http-01 against Pebble); a second
    call with the same settings changes nothing, a new name changes the lineage (--expand)."""
    home = tmp_path / "home"
    acme = {"server": pebble.directory_url, "agree_tos": True, "ca_bundle": str(pebble.ca_bundle),
            "http_port": pebble.http_port, "http_address": "127.0.0.1", "challenge": "http-01"}

    def issue(**extra: Any) -> dict[str, Any]:
        args = {"cn": "acme.mail.test", "key": "ec256", "home": str(home), "acme": acme,
                "executable": str(certkit_wrapper(tmp_path)), **extra}
        proc = subprocess.run([tool("ansible"), "localhost", "-c", "local", "-e",
                               f"ansible_python_interpreter={sys.executable}", "-m", "certkit.mail.certkit_issue",
                               "-a", json.dumps(args)], capture_output=True, text=True,
                              env=ansible_env(collections_path, tmp_path), timeout=300)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        return dict(json.loads(proc.stdout.split("=>", 1)[1]))

    first = issue()
    assert first["changed"] is True and first["lineage"]["source"] == pebble.directory_url
    assert first["lineage"]["version"] == 1 and first["lineage"]["domains"] == ["acme.mail.test"]
    second = issue()
    assert second["changed"] is False and second["lineage"]["serial"] == first["lineage"]["serial"]
    third = issue(san=["smtp.acme.mail.test"])
    assert third["changed"] is True and third["lineage"]["version"] == 2
    assert third["lineage"]["domains"] == ["acme.mail.test", "smtp.acme.mail.test"]
