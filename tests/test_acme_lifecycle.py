"""The ACME lifecycle against a real Pebble: revoke, dry runs, CSR issuance, account management.

Pebble's management port tells what the CA thinks
(``GET /cert-status-by-serial/SERIAL``: Valid or Revoked), so every claim
certkit makes about the CA is checked at the CA.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from certkit.cli import cli
from certkit.store import Store
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


def test_key_compromise_ends_reuse_key(pebble: PebbleServer, home: Path) -> None:
    cn = "revoke-reuse.example.com"
    issued(home, pebble, cn, "--reuse-key")
    assert run(home, "renew", "--force", cn).exit_code == 0
    store = Store(home)
    assert store.read_version(cn, 1).key_pem == store.read_version(cn, 2).key_pem  # --reuse-key at work
    assert run(home, "revoke", cn, "--reason", "keyCompromise").exit_code == 0
    assert run(home, "renew", cn).exit_code == 0
    assert store.read_version(cn, 3).key_pem != store.read_version(cn, 2).key_pem  # a leaked key is not reused


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


# ----- dry runs -------------------------------------------------------------------------------------


def snapshot(home: Path) -> dict[str, tuple[int, bytes | str]]:
    """Every path under the home with its mode and content (or link target): byte for byte."""
    found: dict[str, tuple[int, bytes | str]] = {}
    if not home.exists():
        return found
    for path in sorted(home.rglob("*")):
        rel = str(path.relative_to(home))
        if path.is_symlink():
            found[rel] = (0, str(path.readlink()))
        elif path.is_file():
            found[rel] = (path.stat().st_mode, path.read_bytes())
        else:
            found[rel] = (path.stat().st_mode, "dir")
    return found


def test_issue_dry_run_on_an_empty_home_stores_nothing(pebble: PebbleServer, home: Path) -> None:
    result = run(home, "issue", "--cn", "dry.example.com", *acme_args(pebble), "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    rec = json.loads(result.stdout)
    assert rec["dry_run"] is True and rec["stored"] is False and rec["source"] == pebble.directory_url
    assert ca_status(pebble, rec["serial"]) == "Valid"  # the CA really issued it
    assert not home.exists()  # not even the state directory (a throwaway account at the CA only)


def test_dry_runs_leave_the_state_dir_byte_for_byte(pebble: PebbleServer, home: Path, tmp_path: Path) -> None:
    marker = tmp_path / "hook-ran"
    hook = tmp_path / "hook.sh"
    hook.write_text(f"#!/bin/sh\necho ran >> {marker}\n")
    hook.chmod(0o755)
    issued(home, pebble, "dryrenew.example.com", "--email", "dry@example.com", "--deploy", f"script:{hook}")
    hooks_dir = home / "hooks" / "deploy"
    hooks_dir.mkdir(parents=True)
    (hooks_dir / "global.sh").write_text(hook.read_text())
    (hooks_dir / "global.sh").chmod(0o700)
    marker.unlink()
    before = snapshot(home)
    result = run(home, "issue", "--cn", "dryrenew.example.com", *acme_args(pebble, "--email", "dry@example.com"),
                 "--deploy", f"script:{hook}", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "Nothing was stored" in result.output
    result = run(home, "renew", "--force", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["dry_run"] is True and report["renewed"] == [] and report["due"] == ["dryrenew.example.com"]
    assert "test certificate from" in report["lineages"][0]["reason"]
    assert snapshot(home) == before
    assert not marker.exists()  # neither the target nor the hooks folder ran


def test_dry_run_failure_exit_1_nothing_stored(pebble: PebbleServer, home: Path) -> None:
    # Pebble's VA cannot fetch a token nobody serves: the port below is not the one Pebble asks.
    args = acme_args(pebble)
    args[args.index("--http-port") + 1] = str(pebble.http_port + 1 if pebble.http_port < 65535 else 1024)
    result = run(home, "issue", "--cn", "dryfail.example.com", *args, "--dry-run")
    assert result.exit_code == 1
    assert not (home / "lineages").exists()


# ----- issue --csr ----------------------------------------------------------------------------------


def openssl_csr(tmp: Path, subj: str, sans: str | None = None, newkey: str = "rsa:2048",
                der: bool = False) -> tuple[Path, Path]:
    """A key and CSR made as another server would: `openssl req -new` (the key stays in ``tmp``)."""
    key, csr = tmp / "other-server.key", tmp / ("request.der" if der else "request.csr")
    argv = ["openssl", "req", "-new", "-newkey", newkey, "-nodes", "-keyout", str(key), "-subj", subj,
            "-out", str(csr), "-outform", "DER" if der else "PEM"]
    if sans:
        argv += ["-addext", f"subjectAltName={sans}"]
    subprocess.run(argv, check=True, capture_output=True)
    return key, csr


def test_issue_csr_keyless_lineage_renews_with_the_same_csr(pebble: PebbleServer, home: Path,
                                                            tmp_path: Path) -> None:
    key, csr = openssl_csr(tmp_path, "/CN=exchange.example.com",
                           "DNS:exchange.example.com,DNS:autodiscover.example.com")
    result = run(home, "issue", "--csr", str(csr), *acme_args(pebble))
    assert result.exit_code == 0, result.output
    assert "none here: it stays on the server that made the CSR" in result.output
    rec = json.loads(run(home, "show", "exchange.example.com", "--json").stdout)
    assert rec["domains"] == ["exchange.example.com", "autodiscover.example.com"]
    assert rec["paths"]["key"] is None and rec["csr"] and rec["key_type"] == "rsa2048"
    live = Path(rec["paths"]["cert"]).parent
    assert not (live / "privkey.pem").exists() and not (live / "combined.pem").exists()
    assert "key file:     none here" in run(home, "show", "exchange.example.com").output
    # The certificate belongs to the other server's key: openssl says they match.
    pub_cert = subprocess.run(["openssl", "x509", "-in", str(live / "cert.pem"), "-noout", "-pubkey"],
                              check=True, capture_output=True, text=True).stdout
    pub_key = subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout"], check=True, capture_output=True,
                             text=True).stdout
    assert pub_cert == pub_key
    # export: PEM without a key, DER; PFX refused clearly.
    out = tmp_path / "export"
    assert run(home, "export", "exchange.example.com", "--format", "pem", "--out", str(out)).exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["cert.pem", "chain.pem", "fullchain.pem"]
    result = run(home, "export", "exchange.example.com", "--format", "pfx", "--out", str(tmp_path / "x.pfx"))
    assert result.exit_code == 2 and "no private key here" in result.stderr
    assert not (tmp_path / "x.pfx").exists()
    # deploy: a script gets cert and chain, no key; postfix is refused (it needs the key).
    seen = tmp_path / "seen"
    hook = tmp_path / "copy.sh"
    hook.write_text(f'#!/bin/sh\necho "key=$CERTKIT_KEY fullchain=$CERTKIT_FULLCHAIN" > {seen}\n')
    hook.chmod(0o755)
    assert run(home, "deploy", "exchange.example.com", "--to", f"script:{hook}").exit_code == 0
    assert seen.read_text().startswith("key= fullchain=/")
    result = run(home, "deploy", "exchange.example.com", "--to", "postfix",
                 "--postfix-config-dir", str(tmp_path / "pf"))
    assert result.exit_code == 2 and "has no private key here" in result.stderr
    result = run(home, "revoke", "exchange.example.com", "--with-cert-key")
    assert result.exit_code == 2 and "no key file here" in result.stderr
    # A dry run with the stored CSR stores nothing.
    before = snapshot(home)
    result = run(home, "renew", "--force", "--dry-run", "exchange.example.com")
    assert result.exit_code == 0 and "test certificate from" in result.output, result.output
    assert snapshot(home) == before
    # renew sends the stored CSR again: same key, new certificate.
    result = run(home, "renew", "--force", "exchange.example.com", "--json")
    assert result.exit_code == 0, result.output
    second = json.loads(run(home, "show", "exchange.example.com", "--json").stdout)
    assert second["version"] == 2 and second["serial"] != rec["serial"]
    pub_new = subprocess.run(["openssl", "x509", "-in", second["paths"]["cert"], "-noout", "-pubkey"],
                             check=True, capture_output=True, text=True).stdout
    assert pub_new == pub_key


def test_issue_csr_der_and_ecdsa(pebble: PebbleServer, home: Path, tmp_path: Path) -> None:
    # (Pebble counts subjectAltName entries only, so the CN is repeated there, as openssl users do.)
    _key, csr = openssl_csr(tmp_path, "/CN=appliance.example.com", "DNS:appliance.example.com",
                            newkey="ec:" + str(ec_params(tmp_path)), der=True)
    result = run(home, "issue", "--csr", str(csr), "--name", "appliance", *acme_args(pebble), "--json")
    assert result.exit_code == 0, result.output
    rec = json.loads(result.stdout)
    assert rec["name"] == "appliance" and rec["key_type"] == "ec256" and rec["domains"] == ["appliance.example.com"]


def ec_params(tmp: Path) -> Path:
    path = tmp / "p256.pem"
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-out", str(path)], check=True, capture_output=True)
    return path


@pytest.mark.parametrize(("case", "message"), [
    ("garbage", "not a certificate request"),
    ("cert", "not a certificate request"),
    ("weak", "1024-bit RSA key"),
    ("tampered", "signature does not verify"),
    ("self-signed", "--csr needs --acme"),
    ("with-cn", "cannot be combined with --csr"),
    ("pfx", "needs the private key"),
])
def test_issue_csr_refusals_exit_2(home: Path, tmp_path: Path, case: str, message: str) -> None:
    _key, csr = openssl_csr(tmp_path, "/CN=refused.example.com", newkey="rsa:1024" if case == "weak" else "rsa:2048")
    if case == "garbage":
        csr.write_bytes(b"\x00\x01 not a request at all\n")
    elif case == "cert":
        subprocess.run(["openssl", "req", "-x509", "-in", str(csr), "-key", str(_key), "-out", str(csr)],
                       check=True, capture_output=True)
    elif case == "tampered":
        der = subprocess.run(["openssl", "req", "-in", str(csr), "-outform", "DER"], check=True,
                             capture_output=True).stdout
        at = der.index(b"refused")
        csr.write_bytes(der[:at] + b"R" + der[at + 1:])
    args = ["issue", "--csr", str(csr)]
    if case != "self-signed":
        args += ["--acme", "--server", "https://127.0.0.1:9/dir", "--agree-tos"]
    args += {"with-cn": ["--cn", "other.example.com"], "pfx": ["--pfx"]}.get(case, [])
    result = run(home, *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert not (home / "lineages").exists()


# ----- accounts -------------------------------------------------------------------------------------


def account_cli(home: Path, pebble: PebbleServer, action: str, *extra: str) -> Any:
    return run(home, "account", action, "--server", pebble.directory_url, "--ca-bundle", str(pebble.ca_bundle),
               *extra)


def key_known_to_ca(pebble: PebbleServer, key_json: bytes) -> str | None:
    """The account URL the CA has for this key (newAccount onlyReturnExisting), or None when it has none."""
    from acme import messages
    from josepy.jwk import JWK

    from certkit.acme.account import alg_for, get_directory
    from certkit.acme.net import Network

    jwk = JWK.json_loads(key_json.decode())
    directory = get_directory(pebble.directory_url, str(pebble.ca_bundle))
    net = Network(jwk, alg=alg_for(jwk), ca_bundle=str(pebble.ca_bundle), new_nonce_url=directory["newNonce"])
    try:
        response = net.post(directory["newAccount"], messages.NewRegistration(only_return_existing=True))
    except messages.Error as exc:
        assert exc.code == "accountDoesNotExist", exc
        return None
    finally:
        net.close()
    return str(response.headers["Location"])


def test_account_rollover_and_update(pebble: PebbleServer, home: Path) -> None:
    issued(home, pebble, "acct1.example.com", "--email", "roll@example.com")
    listed = json.loads(run(home, "account", "list", "--json").stdout)
    assert [(a["server"], a["email"], a["status"]) for a in listed] == [
        (pebble.directory_url, "roll@example.com", "valid")]
    adir = Store(home).account_dir(pebble.directory_url, "roll@example.com")
    old_key = (adir / "key.json").read_bytes()
    uri = key_known_to_ca(pebble, old_key)
    assert uri == listed[0]["uri"]
    result = account_cli(home, pebble, "rollover", "--email", "roll@example.com", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["key_thumbprint"] != listed[0]["key_thumbprint"]
    new_key = (adir / "key.json").read_bytes()
    assert new_key != old_key and not (adir / "key-new.json").exists()
    assert (adir / "key.json").stat().st_mode & 0o777 == 0o600
    assert key_known_to_ca(pebble, new_key) == uri  # the same account, now with the new key
    assert key_known_to_ca(pebble, old_key) is None  # the CA refuses the old key
    # Issuing still works, with the new key (in a new process: nothing cached).
    result = subprocess.run([sys.executable, "-m", "certkit", "--home", str(home), "issue",
                             "--cn", "acct2.example.com", *acme_args(pebble, "--email", "roll@example.com")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert len(json.loads(run(home, "account", "list", "--json").stdout)) == 1  # no new account was needed
    result = account_cli(home, pebble, "update", "--email", "roll@example.com", "--new-email", "ops@example.com")
    assert result.exit_code == 0, result.output
    shown = json.loads(account_cli(home, pebble, "show", "--json").stdout)  # the only account: no --email needed
    assert shown["contact"] == ["mailto:ops@example.com"] and shown["status"] == "valid"
    result = account_cli(home, pebble, "update", "--email", "noc@example.com")  # certbot's habit
    assert result.exit_code == 0, result.output
    shown = json.loads(account_cli(home, pebble, "show", "--email", "roll@example.com", "--json").stdout)
    assert shown["contact"] == ["mailto:noc@example.com"]
    assert shown["uri"] == uri and shown["key_changed"]


def test_interrupted_rollover_is_finished_or_dropped(pebble: PebbleServer, home: Path) -> None:
    issued(home, pebble, "acct3.example.com", "--email", "crash@example.com")
    adir = Store(home).account_dir(pebble.directory_url, "crash@example.com")
    old_key = (adir / "key.json").read_bytes()
    # A pending key the CA never saw (killed before the request): dropped, then a normal rollover.
    from cryptography.hazmat.primitives.asymmetric import ec
    from josepy.jwk import JWKEC

    (adir / "key-new.json").write_bytes(JWKEC(key=ec.generate_private_key(ec.SECP256R1())).json_dumps().encode())
    result = account_cli(home, pebble, "rollover", "--email", "crash@example.com")
    assert result.exit_code == 0 and "rolled over" in result.output, result.output
    assert key_known_to_ca(pebble, (adir / "key.json").read_bytes()) is not None
    # A pending key the CA already accepted (killed after the request): kept as the key.
    current = (adir / "key.json").read_bytes()
    (adir / "key-new.json").write_bytes(current)
    (adir / "key.json").write_bytes(old_key)  # the old, refused key, as if the rename never happened
    result = account_cli(home, pebble, "rollover", "--email", "crash@example.com")
    assert result.exit_code == 0 and "finished the key change" in result.output, result.output
    assert (adir / "key.json").read_bytes() == current and not (adir / "key-new.json").exists()


def test_account_deactivate(pebble: PebbleServer, home: Path) -> None:
    issued(home, pebble, "acct4.example.com", "--email", "gone@example.com")
    adir = Store(home).account_dir(pebble.directory_url, "gone@example.com")
    result = account_cli(home, pebble, "deactivate", "--email", "gone@example.com", "--yes")
    assert result.exit_code == 0, result.output
    listed = json.loads(run(home, "account", "list", "--json").stdout)
    assert listed[0]["status"] == "deactivated" and listed[0]["deactivated"]
    # certkit says so instead of using it ...
    result = run(home, "issue", "--cn", "acct4.example.com", *acme_args(pebble, "--email", "gone@example.com"))
    assert result.exit_code == 2 and "was deactivated" in result.stderr
    assert Store(home).versions("acct4.example.com") == [1]
    # ... and the CA refuses the account too.
    from acme import messages
    from josepy.jwk import JWK

    from certkit.acme.account import alg_for, get_directory
    from certkit.acme.net import Network

    jwk = JWK.json_loads((adir / "key.json").read_text())
    info = json.loads((adir / "account.json").read_text())
    directory = get_directory(pebble.directory_url, str(pebble.ca_bundle))
    net = Network(jwk, alg=alg_for(jwk), account_uri=info["uri"], ca_bundle=str(pebble.ca_bundle),
                  new_nonce_url=directory["newNonce"])
    with pytest.raises(messages.Error) as refused:
        net.post(directory["newOrder"], messages.NewOrder(identifiers=[
            messages.Identifier(typ=messages.IDENTIFIER_FQDN, value="acct4.example.com")]))
    net.close()
    assert refused.value.code == "unauthorized"
    for action in ("rollover", "update"):
        extra = ["--new-email", "x@example.com"] if action == "update" else []
        result = account_cli(home, pebble, action, "--email", "gone@example.com", *extra)
        assert result.exit_code == 2 and "was deactivated" in result.stderr


def test_account_picking_errors(home: Path) -> None:
    result = run(home, "account", "show")
    assert result.exit_code == 2 and "no stored ACME account" in result.stderr
    result = run(home, "account", "list")
    assert result.exit_code == 0 and "No ACME accounts" in result.output
    assert not home.exists()  # list and show create nothing
