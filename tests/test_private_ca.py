"""Private CA mode (`certkit ca`, `issue --ca`): the certificates judged by openssl and Python's ssl.

openssl is the independent judge of what certkit writes: it must accept the
leaves, and it must reject a leaf the test itself forges with the CA key for
a name outside --permit - proof that the name constraints are encoded right,
not only checked by certkit before signing.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import ssl
import stat
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from certkit.cli import cli

CA = "corp"
HOST = "mail.corp.example"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def ok(*args: str) -> str:
    code, out, err = run(*args)
    assert code == 0, out + err
    return out


def verify(cafile: Path, cert: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", "verify", "-CAfile", str(cafile), *extra, str(cert)],
                          capture_output=True, text=True)


def ca_cert(home: Path, generation: int = 1) -> Path:
    return home / "cas" / CA / f"g{generation:04d}" / "ca.pem"


def ca_key(home: Path, generation: int = 1) -> Path:
    return home / "cas" / CA / f"g{generation:04d}" / "ca.key"


def live(home: Path, lineage: str = HOST) -> Path:
    return home / "lineages" / lineage / "live"


@pytest.fixture
def corp(home: Path) -> Path:
    """CA `corp` for corp.example and 127.0.0.0/8 (ec256: fast) and a leaf for mail.corp.example + 127.0.0.1."""
    ok("ca", "create", CA, "--permit", "corp.example", "--permit-ip", "127.0.0.0/8", "--key", "ec256")
    ok("issue", "--cn", HOST, "--san", "127.0.0.1", "--ca", CA, "--key", "ec256")
    return home


def forge(home: Path, name: x509.GeneralName, generation: int = 1) -> bytes:
    """A leaf for ``name`` signed with the CA key by the test itself (certkit would refuse to make it)."""
    issuer = x509.load_pem_x509_certificate(ca_cert(home, generation).read_bytes())
    signer = serialization.load_pem_private_key(ca_key(home, generation).read_bytes(), password=None)
    assert isinstance(signer, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([]))
            .issuer_name(issuer.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([name]), critical=True)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(signer, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def test_ca_root_profile(corp: Path) -> None:
    text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in", str(ca_cert(corp))],
                          capture_output=True, text=True, check=True).stdout
    assert "CA:TRUE, pathlen:0" in text
    assert "X509v3 Name Constraints: critical" in text and "DNS:corp.example" in text
    assert "IP:127.0.0.0/255.0.0.0" in text
    assert "Certificate Sign, CRL Sign" in text
    assert stat.S_IMODE(ca_key(corp).stat().st_mode) == 0o600
    for folder in (corp / "cas", corp / "cas" / CA, ca_key(corp).parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_openssl_and_python_ssl_accept_the_leaf(corp: Path) -> None:
    leaf = live(corp) / "cert.pem"
    res = verify(ca_cert(corp), leaf, "-purpose", "sslserver", "-verify_hostname", HOST)
    assert res.returncode == 0 and ": OK" in res.stdout, res.stderr
    assert verify(ca_cert(corp), leaf, "-verify_ip", "127.0.0.1").returncode == 0
    # Python's ssl: a real TLS 1.3 handshake in memory, the client trusting only the CA
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(live(corp) / "fullchain.pem", live(corp) / "privkey.pem")
    client = ssl.create_default_context(cafile=str(ca_cert(corp)))
    assert handshake(server, client, HOST) is None
    assert "certificate verify failed" in str(handshake(server, ssl.create_default_context(), HOST))


def handshake(server: ssl.SSLContext, client: ssl.SSLContext, host: str) -> Exception | None:
    """Drive a client and a server TLS object against each other in memory; the client's error, if any."""
    bios = [ssl.MemoryBIO() for _ in range(4)]
    srv = server.wrap_bio(bios[0], bios[1], server_side=True)
    cli_obj = client.wrap_bio(bios[2], bios[3], server_hostname=host)
    for _ in range(10):
        done = 0
        for side, outbox, peer_in in ((cli_obj, bios[3], bios[0]), (srv, bios[1], bios[2])):
            try:
                side.do_handshake()
                done += 1
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as exc:
                if side is cli_obj:
                    return exc
                done += 1
            peer_in.write(outbox.read())
        if done == 2:
            return None
    return RuntimeError("handshake did not finish")


def test_forged_leaf_outside_permit_is_rejected_by_openssl(corp: Path, tmp_path: Path) -> None:
    cases = {
        "inside": (x509.DNSName("smtp.corp.example"), None),
        "bank": (x509.DNSName("www.bank.example"), "permitted subtree violation"),
        "lookalike": (x509.DNSName("evilcorp.example"), "permitted subtree violation"),
        "ip": (x509.IPAddress(ipaddress.ip_address("10.1.2.3")), "permitted subtree violation"),
    }
    for label, (name, error) in cases.items():
        path = tmp_path / f"{label}.pem"
        path.write_bytes(forge(corp, name))
        res = verify(ca_cert(corp), path)
        if error is None:
            assert res.returncode == 0, res.stderr
        else:
            assert res.returncode != 0 and error in res.stdout + res.stderr, (label, res.stdout, res.stderr)


def test_dns_only_ca_excludes_every_ip(home: Path, tmp_path: Path) -> None:
    ok("ca", "create", CA, "--permit", "corp.example", "--key", "ec256")
    path = tmp_path / "ip.pem"
    path.write_bytes(forge(home, x509.IPAddress(ipaddress.ip_address("127.0.0.1"))))
    res = verify(ca_cert(home), path)
    assert res.returncode != 0 and "excluded subtree violation" in res.stdout + res.stderr
    code, _, err = run("issue", "--cn", "mail.corp.example", "--san", "127.0.0.1", "--ca", CA)
    assert code == 2 and "127.0.0.1 is outside what CA 'corp' may sign for" in err


def test_names_outside_the_constraints_refused_before_signing(corp: Path) -> None:
    for names in (["--cn", "mail.other.example"], ["--cn", "smtp.corp.example", "--san", "www.bank.example"],
                  ["--cn", "*.other.example"], ["--cn", "10.0.0.1"]):
        code, out, err = run("issue", *names, "--ca", CA)
        assert code == 2 and "outside what CA 'corp' may sign for" in err and "Traceback" not in err, err
    assert sorted(p.name for p in (corp / "lineages").iterdir()) == [HOST]  # nothing else was made
    ok("issue", "--cn", "*.corp.example", "--ca", CA, "--key", "ec256")  # a wildcard under the permit is fine


def test_create_warns_without_permit_and_refuses_bad_input(home: Path) -> None:
    code, out, err = run("ca", "create", "open", "--key", "ec256")
    assert code == 0 and "can sign for ANY name" in err
    assert "Name Constraints" not in subprocess.run(
        ["openssl", "x509", "-noout", "-text", "-in", str(home / "cas/open/g0001/ca.pem")],
        capture_output=True, text=True).stdout
    for args, message in ((["open"], "exists already"), (["x", "--permit", "*.corp.example"], "is a wildcard"),
                          (["x", "--permit", "10.0.0.1"], "use --permit-ip"),
                          (["x", "--permit-ip", "10.0.0.1/8"], "is not a network"),
                          (["bad/name"], "invalid CA name"), (["x", "--key", "rsa1024"], "refusing a 1024-bit"),
                          (["x", "--passphrase-file", "/nonexistent"], "cannot read the CA passphrase file")):
        code, _, err = run("ca", "create", *args)
        assert code == 2 and message in err and "Traceback" not in err, (args, err)
    code, _, err = run("issue", "--cn", HOST, "--ca", "missing")
    assert code == 2 and "no CA named 'missing'" in err
    code, _, err = run("issue", "--cn", HOST, "--ca", "open", "--trust")
    assert code == 2 and "certkit ca trust open" in err


def test_show_json_and_list_name_the_issuing_ca(corp: Path) -> None:
    rec = json.loads(ok("show", HOST, "--json"))
    assert rec["issuer_ca"] == CA and rec["issuer_ca_generation"] == 1
    assert rec["source"] == "private-ca:corp" and rec["issuer"] == "O=certkit private CA,CN=corp CA G1"
    assert "issuer CA:    corp (generation 1)" in ok("show", HOST)
    ok("issue", "--cn", "self.corp.example", "--key", "ec256")
    assert json.loads(ok("show", "self.corp.example", "--json"))["issuer_ca"] is None
    listing = json.loads(ok("ca", "list", "--json"))
    assert [c["name"] for c in listing] == [CA]
    entry = listing[0]
    assert entry["permit"] == ["corp.example"] and entry["permit_ip"] == ["127.0.0.0/8"]
    assert entry["lineages"] == {HOST: 1} and entry["current_generation"] == 1
    assert entry["generations"][0]["cert"] == str(ca_cert(corp)) and not entry["encrypted_key"]
    assert ca_key(corp).read_text().strip().splitlines()[1] not in json.dumps(listing)


def test_export_formats(corp: Path, tmp_path: Path) -> None:
    out = ok("ca", "export", CA, "--format", "pem", "--out", str(tmp_path / "corp.pem"))
    assert "no key" in out
    assert (tmp_path / "corp.pem").read_bytes() == ca_cert(corp).read_bytes()
    ok("ca", "export", CA, "--format", "der", "--out", str(tmp_path))
    der = subprocess.run(["openssl", "x509", "-inform", "der", "-in", str(tmp_path / "corp-ca.cer"), "-noout",
                          "-subject"], capture_output=True, text=True, check=True).stdout
    assert "corp CA G1" in der
    ok("ca", "export", CA, "--format", "p7b", "--out", str(tmp_path / "corp.p7b"))
    p7 = subprocess.run(["openssl", "pkcs7", "-inform", "der", "-in", str(tmp_path / "corp.p7b"), "-print_certs"],
                        capture_output=True, text=True, check=True).stdout
    assert p7.count("BEGIN CERTIFICATE") == 1
    for path in (tmp_path / "corp.pem", tmp_path / "corp-ca.cer", tmp_path / "corp.p7b"):
        assert b"PRIVATE KEY" not in path.read_bytes()


def test_trust_and_untrust_with_a_trust_store_dir(corp: Path, tmp_path: Path) -> None:
    anchors = tmp_path / "anchors"
    out = ok("ca", "trust", CA, "--trust-store-dir", str(anchors))
    anchor = anchors / "certkit-ca-corp-g1.crt"
    assert anchor.read_bytes() == ca_cert(corp).read_bytes() and f"trusted: {anchor}" in out
    assert json.loads(ok("ca", "list", "--json"))[0]["trusted"] is True
    out = ok("ca", "untrust", CA)  # the folder is remembered
    assert not anchor.exists() and f"untrusted: removed {anchor}" in out
    assert json.loads(ok("ca", "list", "--json"))[0]["trusted"] is False


def test_renewal_reissues_from_the_same_ca_with_no_trust_step(corp: Path, tmp_path: Path) -> None:
    anchors = tmp_path / "anchors"
    ok("ca", "trust", CA, "--trust-store-dir", str(anchors))
    before = {p.name: p.read_bytes() for p in anchors.iterdir()}
    old = json.loads(ok("show", HOST, "--json"))
    ok("renew", "--force", HOST)
    new = json.loads(ok("show", HOST, "--json"))
    assert new["version"] == 2 and new["serial"] != old["serial"] and new["issuer_ca"] == CA
    assert verify(ca_cert(corp), live(corp) / "cert.pem", "-verify_hostname", HOST).returncode == 0
    assert {p.name: p.read_bytes() for p in anchors.iterdir()} == before


def test_hook_env_names_the_ca_and_never_its_key(corp: Path, tmp_path: Path) -> None:
    passphrase = tmp_path / "pass"
    passphrase.write_text("the CA passphrase 123\n")
    ok("ca", "create", "locked", "--permit", "corp.example", "--key", "ec256", "--passphrase-file", str(passphrase))
    key_text = (corp / "cas/locked/g0001/ca.key").read_text()
    assert key_text.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    dump = tmp_path / "env.txt"
    hook = tmp_path / "hook.sh"
    hook.write_text(f"#!/bin/sh\n{{ env; echo \"ARGV: $0 $*\"; }} > {dump}\n")
    hook.chmod(0o700)
    code, out, err = run("issue", "--cn", "locked.corp.example", "--ca", "locked", "--key", "ec256",
                         "--deploy", f"script:{hook}")
    assert code == 0, out + err
    env = dict(line.split("=", 1) for line in dump.read_text().splitlines() if "=" in line and
               not line.startswith("ARGV"))
    assert env["CERTKIT_ISSUER_CA"] == "locked"
    assert env["CERTKIT_ISSUER_CA_CERT"] == str(corp / "cas/locked/g0001/ca.pem")
    body = key_text.splitlines()[1]
    for text in (dump.read_text(), out, err):
        assert body not in text and "ca.key" not in text and "the CA passphrase 123" not in text
    # a wrong passphrase: exit 2, named, no new version
    passphrase.write_text("wrong\n")
    code, out, err = run("renew", "--force", "locked.corp.example")
    assert code == 1 and "does not open the CA key" in out + err


def test_ca_key_readable_by_others_is_refused(corp: Path) -> None:
    for mode in (0o640, 0o604, 0o620):
        os.chmod(ca_key(corp), mode)
        code, _, err = run("issue", "--cn", "other.corp.example", "--ca", CA)
        assert code == 2 and f"mode {mode:04o}" in err and "chmod 600" in err, err
    assert not (corp / "lineages" / "other.corp.example" / "versions").exists()
    os.chmod(ca_key(corp), 0o600)
    ok("issue", "--cn", "other.corp.example", "--ca", CA, "--key", "ec256")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="root's state-directory rules")
def test_root_refuses_a_ca_folder_another_user_controls(corp: Path) -> None:
    folder = corp / "cas" / CA
    os.chown(folder, 65534, 65534)
    code, _, err = run("issue", "--cn", "x.corp.example", "--ca", CA)
    assert code == 2 and "owned by uid 65534" in err
    os.chown(folder, 0, 0)
    os.chmod(folder, 0o777)
    code, _, err = run("ca", "export", CA, "--format", "pem")
    assert code == 2 and "writable by group or others" in err
    os.chmod(folder, 0o700)


def test_rotate_overlap_then_retire(corp: Path, tmp_path: Path) -> None:
    anchors = tmp_path / "anchors"
    ok("ca", "trust", CA, "--trust-store-dir", str(anchors))
    old_leaf = tmp_path / "old-leaf.pem"
    old_leaf.write_bytes((live(corp) / "cert.pem").read_bytes())
    out = ok("ca", "rotate", CA)
    assert "generation 2" in out and "certkit ca retire corp" in out
    assert sorted(p.name for p in anchors.iterdir()) == ["certkit-ca-corp-g1.crt", "certkit-ca-corp-g2.crt"]
    bundle = tmp_path / "bundle.pem"
    ok("ca", "export", CA, "--format", "pem", "--out", str(bundle))
    assert bundle.read_text().count("BEGIN CERTIFICATE") == 2
    # a client holding the bundle trusts the old leaf and the one renewed from the new generation
    assert verify(bundle, old_leaf).returncode == 0
    code, _, err = run("ca", "retire", CA)
    assert code == 2 and HOST in err and "renew --force" in err  # still served from G1
    ok("renew", "--force", HOST)
    rec = json.loads(ok("show", HOST, "--json"))
    assert rec["issuer_ca_generation"] == 2 and rec["issuer"] == "O=certkit private CA,CN=corp CA G2"
    new_leaf = live(corp) / "cert.pem"
    assert verify(bundle, new_leaf, "-verify_hostname", HOST).returncode == 0
    assert verify(ca_cert(corp, 2), new_leaf).returncode == 0
    assert verify(ca_cert(corp, 1), new_leaf).returncode != 0  # issuance really moved
    path = tmp_path / "forged.pem"  # the successor carries the same constraints
    path.write_bytes(forge(corp, x509.DNSName("www.bank.example"), generation=2))
    assert "permitted subtree violation" in verify(ca_cert(corp, 2), path).stdout + verify(
        ca_cert(corp, 2), path).stderr
    out = ok("ca", "retire", CA)
    assert "Retired generation 1" in out
    assert sorted(p.name for p in anchors.iterdir()) == ["certkit-ca-corp-g2.crt"]
    ok("ca", "export", CA, "--format", "pem", "--out", str(bundle))
    assert bundle.read_text().count("BEGIN CERTIFICATE") == 1


def test_selfssl_trust_keeps_working(home: Path, tmp_path: Path) -> None:
    anchors = tmp_path / "anchors"
    ok("selfssl", "/T", "/N:CN=legacy.corp.example", "/K:2048", "/V:365", "--trust-store-dir", str(anchors))
    assert (anchors / "certkit-legacy.corp.example.crt").read_bytes() == (
        live(home, "legacy.corp.example") / "cert.pem").read_bytes()


def test_leaf_lifetime_cut_to_the_ca_and_an_expired_ca_refused(home: Path) -> None:
    from certkit import keys, names
    from certkit.ca import authority, constraints
    from certkit.errors import OperationError

    code, out, err = run("ca", "create", CA, "--permit", "corp.example", "--days", "30", "--key", "ec256")
    assert code == 0, err
    code, out, err = run("issue", "--cn", HOST, "--ca", CA, "--key", "ec256", "--json")
    assert code == 0 and "lifetime cut to the CA's" in err and "certkit ca rotate corp" in err
    root = x509.load_pem_x509_certificate(ca_cert(home).read_bytes())
    assert json.loads(out)["not_after"] == root.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    signer = serialization.load_pem_private_key(ca_key(home).read_bytes(), password=None)
    assert isinstance(signer, ec.EllipticCurvePrivateKey)
    later = root.not_valid_after_utc + dt.timedelta(seconds=1)
    with pytest.raises(OperationError, match="expired on"):
        authority.sign_leaf(root, signer, constraints.parse(["corp.example"], []), keys.generate("ec256").public_key(),
                            [names.parse_name(HOST)], 30, now=later)
