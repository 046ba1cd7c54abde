"""DANE and MTA-STS pieces without servers: TLSA arithmetic (RFC 7671 matching), policy syntax and ids,
settings round trips and the command line's usage errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization

from certkit import keys, names, tlsa
from certkit import x509 as cx
from certkit.check.mtasts import mx_covered, parse_policy
from certkit.cli import cli
from certkit.dane.mtasts import make_policy
from certkit.errors import UsageError
from certkit.settings import DaneSettings, LineageSettings


def chain() -> list[bytes]:
    """A leaf and an unrelated 'CA' certificate, as DER."""
    leaf = cx.self_signed(keys.generate("ec256"), [names.parse_name("mx.example.test")], 30)
    ca = cx.self_signed(keys.generate("ec256"), [names.parse_name("ca.example.test")], 30)
    return [cx.to_der(leaf), cx.to_der(ca)]


def test_association_data_matches_openssl_style_digests() -> None:
    leaf_der = chain()[0]
    from cryptography import x509

    spki = x509.load_der_x509_certificate(leaf_der).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert tlsa.association(leaf_der).text() == f"3 1 1 {hashlib.sha256(spki).hexdigest()}"
    assert tlsa.association(leaf_der, 3, 0, 2).data == hashlib.sha512(leaf_der).digest()
    assert tlsa.association(leaf_der, 3, 1, 0).data == spki
    assert tlsa.Tlsa.parse("3 1 1 AB CD").text() == "3 1 1 abcd"
    with pytest.raises(ValueError):
        tlsa.Tlsa.parse("3 1 x abcd")


def test_rfc7671_usages_match_the_right_chain_position() -> None:
    leaf, ca = chain()
    ee = tlsa.association(leaf, tlsa.DANE_EE)
    ta = tlsa.association(ca, tlsa.DANE_TA, tlsa.FULL_CERT, tlsa.SHA256)
    assert [m.position for m in tlsa.matches([ee], [leaf, ca])] == [0]
    assert [m.position for m in tlsa.matches([ta], [leaf, ca])] == [1]
    # DANE-TA never matches the leaf, DANE-EE never a CA, PKIX usages are unused for SMTP (RFC 7672 3.1.3).
    assert tlsa.matches([tlsa.association(leaf, tlsa.DANE_TA)], [leaf, ca]) == []
    assert tlsa.matches([tlsa.association(ca, tlsa.DANE_EE)], [leaf, ca]) == []
    assert tlsa.matches([tlsa.association(leaf, tlsa.PKIX_EE)], [leaf, ca]) == []
    assert tlsa.matches([tlsa.Tlsa(3, 1, 9, b"x")], [leaf]) == []  # unknown matching type: unusable
    assert tlsa.owner_name("MX.Example.test.", 25) == "_25._tcp.mx.example.test"


def test_mta_sts_policy_syntax_and_mx_patterns() -> None:
    policy = make_policy("example.test", ["mx1.example.test", "*.mx.example.test"], "enforce", 86400)
    fields, problems = parse_policy(policy.text())
    assert problems == [] and fields["mx"] == ["mx1.example.test", "*.mx.example.test"]
    assert mx_covered("a.mx.example.test", fields["mx"]) == "*.mx.example.test"
    assert mx_covered("a.b.mx.example.test", fields["mx"]) is None  # a wildcard covers one label only
    assert mx_covered("mx2.example.test", fields["mx"]) is None
    _, problems = parse_policy("version: STSv1\nmode: strict\nmax_age: x\n")
    assert problems == ["mode 'strict' is not testing, enforce or none", "max_age 'x' is not 0 to 31557600 seconds",
                        "no mx lines"]
    assert make_policy("example.test", ["mx1.example.test"]).id == make_policy("example.test", ["mx1.example.test"]).id
    for bad in ({"mx": []}, {"mode": "on"}, {"max_age": 0}, {"rua": ["tlsrpt@example.test"]}):
        args = {"mx": ["mx1.example.test"], "mode": "testing", "max_age": 60, "rua": [], **bad}
        with pytest.raises(UsageError):
            make_policy("example.test", args["mx"], args["mode"], args["max_age"], args["rua"])  # type: ignore[arg-type]


def test_dane_settings_round_trip() -> None:
    settings = LineageSettings("mx", ["mx.example.test"], dane=DaneSettings(port=2525, dns_hook="/bin/hook",
                                                                             nameservers=["127.0.0.1:53"]))
    again = LineageSettings.from_dict(settings.to_dict())
    assert again.dane == settings.dane
    assert LineageSettings.from_dict(LineageSettings("mx", ["mx.example.test"]).to_dict()).dane is None


@pytest.mark.parametrize("args, needle", [
    (["issue", "--cn", "mx.example.test", "--dane-port", "2525"], "--dane-port need --dane"),
    (["issue", "--cn", "*.example.test", "--dane"], "--dane-host"),
    (["issue", "--cn", "mx.example.test", "--dane", "--dns-hook", "/nonexistent/hook"], "not an executable"),
    (["issue", "--cn", "mx.example.test", "--dane", "--dane-nameserver", "[::1"], "--dane-nameserver"),
    (["check", "smtp://127.0.0.1:25", "--dnssec-anchor", "/etc/hostname"], "--dnssec-anchor is for --dane"),
    (["check", "smtp://127.0.0.1:25", "--dane", "--dnssec-anchor", "/etc/hostname"], "holds no DS or DNSKEY"),
    (["check", "smtp://127.0.0.1:25", "--dane", "--resolver", "x:99999"], "--resolver"),
    (["check", "smtp://127.0.0.1:25", "--policy-url", "https://x.test/"], "--policy-url is for --mta-sts"),
    (["check", "--mta-sts", "example.test", "--dane"], "--mta-sts is checked on its own"),
    (["mta-sts", "example.test", "--mx", "192.0.2.1"], "not a host name"),
    (["mta-sts", "example.test", "--mx", "mx.example.test", "--rua", "nobody"], "--rua"),
])
def test_bad_dane_input_is_exit_2(home: Path, args: list[str], needle: str) -> None:
    res = CliRunner().invoke(cli, ["--home", str(home), *args])
    assert res.exit_code == 2, res.output
    assert needle in res.output and "Traceback" not in res.output


def test_dane_records_without_a_staged_key(home: Path) -> None:
    runner = CliRunner()
    made = runner.invoke(cli, ["--home", str(home), "issue", "--cn", "mx.example.test", "--key", "ec256"])
    assert made.exit_code == 0, made.output
    res = runner.invoke(cli, ["--home", str(home), "dane", "mx.example.test", "--port", "587", "--ttl", "300"])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if not ln.startswith(";")]
    assert len(lines) == 1 and lines[0].startswith("_587._tcp.mx.example.test. 300 IN TLSA 3 1 1 ")
    assert "no next key is staged" in res.output
