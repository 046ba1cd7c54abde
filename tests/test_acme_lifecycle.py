"""The ACME lifecycle against a real Pebble: revoke, dry runs, CSR issuance, account management.

Pebble's management port tells what the CA thinks
(``GET /cert-status-by-serial/SERIAL``: Valid or Revoked), so every claim
certkit makes about the CA is checked at the CA.
"""

from __future__ import annotations

import json
import ssl
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from certkit.cli import cli
from tests.servers.pebble import PebbleServer
from tests.test_acme import acme_args

pytestmark = pytest.mark.pebble


def run(home: Path, *args: str) -> Any:
    return CliRunner().invoke(cli, ["--home", str(home), *args], catch_exceptions=False)


def issued(home: Path, pebble: PebbleServer, cn: str, *extra: str) -> dict[str, Any]:
    result = run(home, "issue", "--cn", cn, *acme_args(pebble, *extra), "--json")
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def ca_status(pebble: PebbleServer, serial_hex: str) -> str:
    """What Pebble says of a serial: Valid or Revoked."""
    serial = format(int(serial_hex.replace(":", ""), 16), "x")
    context = ssl.create_default_context(cafile=str(pebble.ca_bundle))
    with urllib.request.urlopen(f"{pebble.mgmt_url}/cert-status-by-serial/{serial}", context=context,
                                timeout=10) as resp:
        return str(json.loads(resp.read())["Status"])


# ----- revoke ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("signer", ["account key", "certificate key"])
def test_revoke_then_renew_replaces(pebble: PebbleServer, home: Path, signer: str) -> None:
    cn = "revoke-account.example.com" if signer == "account key" else "revoke-certkey.example.com"
    rec = issued(home, pebble, cn)
    assert ca_status(pebble, rec["serial"]) == "Valid"
    extra = ["--with-cert-key"] if signer == "certificate key" else []
    result = run(home, "revoke", cn, "--reason", "key-compromise" if extra else "superseded", *extra)
    assert result.exit_code == 0, result.output
    assert f"signed with the {signer}" in result.output
    assert ca_status(pebble, rec["serial"]) == "Revoked"
    shown = json.loads(run(home, "show", cn, "--json").stdout)
    assert shown["revoked"]["serial"] == rec["serial"]
    assert shown["revoked"]["reason"] == ("keyCompromise" if extra else "superseded")
    assert "revoked:" in run(home, "show", cn).output
    assert "REVOKED" in run(home, "list").output
    # Weeks of validity left, yet renew replaces it: a revoked certificate is due.
    result = run(home, "renew", cn, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["renewed"] == [cn]
    new = json.loads(run(home, "show", cn, "--json").stdout)
    assert new["version"] == 2 and new["serial"] != rec["serial"] and new["revoked"] is None
    assert ca_status(pebble, new["serial"]) == "Valid"
    assert json.loads(run(home, "renew", cn, "--json").stdout)["not_due"] == [cn]


def test_revoke_twice_is_refused_by_the_ca(pebble: PebbleServer, home: Path) -> None:
    issued(home, pebble, "revoke-twice.example.com")
    assert run(home, "revoke", "revoke-twice.example.com").exit_code == 0
    result = run(home, "revoke", "revoke-twice.example.com")
    assert result.exit_code == 1
    assert "alreadyRevoked" in result.stderr


def test_revoke_bad_input(home: Path) -> None:
    assert run(home, "issue", "--cn", "self.example.com").exit_code == 0
    result = run(home, "revoke", "self.example.com")
    assert result.exit_code == 2 and "self-signed" in result.stderr
    result = run(home, "revoke", "self.example.com", "--reason", "boredom")
    assert result.exit_code == 2 and "keyCompromise" in result.stderr
    assert run(home, "revoke", "nosuch.example.com").exit_code == 2
