"""ACME lineages renewed by `certkit renew` against a local Pebble: valid chains, ARI handled."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from certkit import keys
from certkit import x509 as cx
from certkit.cli import cli
from certkit.store import Store
from tests.servers.pebble import PebbleServer

pytestmark = pytest.mark.pebble


def acme_issue(home: Path, server: PebbleServer, name: str) -> None:
    result = CliRunner().invoke(cli, [
        "--home", str(home), "issue", "--cn", name, "--san", "www." + name, "--key", "ec256", "--acme",
        "--server", server.directory_url, "--ca-bundle", str(server.ca_bundle), "--http-port",
        str(server.http_port), "--http-address", "127.0.0.1", "--agree-tos"])
    assert result.exit_code == 0, result.output


def openssl_verify(server: PebbleServer, tmp: Path, cert_pem: bytes, chain_pem: bytes) -> None:
    (tmp / "root.pem").write_bytes(server.roots_pem(0))
    (tmp / "chain.pem").write_bytes(chain_pem)
    (tmp / "leaf.pem").write_bytes(cert_pem)
    proc = subprocess.run(["openssl", "verify", "-CAfile", str(tmp / "root.pem"), "-untrusted",
                           str(tmp / "chain.pem"), str(tmp / "leaf.pem")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_acme_lineages_renew_concurrently_with_valid_chains(pebble: PebbleServer, home: Path,
                                                            tmp_path: Path) -> None:
    names = [f"r{i}.example.com" for i in range(4)]
    for name in names:
        acme_issue(home, pebble, name)
    store = Store(home)
    before = {n: cx.serial_hex(cx.load_chain(store.live_paths(n).cert.read_bytes())[0]) for n in names}
    # Not due yet: a plain run leaves them alone (and asks Pebble for ARI, which 2.4 does not offer).
    proc = subprocess.run([sys.executable, "-m", "certkit", "--home", str(home), "renew", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert sorted(json.loads(proc.stdout)["not_due"]) == names
    for name in names:
        ari = store.load_state(name).get("ari") or {}
        assert ari.get("checked") and ari.get("retry_after")  # checked once, not again before retry_after
    proc = subprocess.run([sys.executable, "-m", "certkit", "--home", str(home), "renew", "--force",
                           "--concurrency", "4", "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert sorted(json.loads(proc.stdout)["renewed"]) == names
    for name in names:
        live = store.live_paths(name)
        cert_pem, chain_pem = live.cert.read_bytes(), live.chain.read_bytes()
        cert = cx.load_chain(cert_pem)[0]
        assert cx.serial_hex(cert) != before[name]
        assert sorted(cx.dns_names(cert)) == sorted([name, "www." + name])
        assert cx.key_matches(cert, keys.load_pem(live.key.read_bytes()))
        assert store.live_version(name) == 2
        assert store.load_settings(name).source == pebble.directory_url
        openssl_verify(pebble, tmp_path, cert_pem, chain_pem)
        assert store.load_state(name)["last_renewal"]["ok"] is True
