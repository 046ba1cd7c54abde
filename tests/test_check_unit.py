"""Pure parts of `certkit check`: target URLs, SAN-only name matching, reply parsing, reports."""

from __future__ import annotations

import socket
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certkit.check import CheckReport, parse_target, render_text
from certkit.check.certinfo import name_matches
from certkit.check.session import SessionError, SmtpSession
from certkit.errors import UsageError
from tests.servers.zoo import ZooPki


@pytest.mark.parametrize(
    ("url", "host", "port", "mode"),
    [
        ("smtp://mail.example.com", "mail.example.com", 25, "smtp"),
        ("submission://mail.example.com", "mail.example.com", 587, "submission"),
        ("smtps://mail.example.com", "mail.example.com", 465, "smtps"),
        ("SMTPS://mail.example.com:4650/", "mail.example.com", 4650, "smtps"),
        ("mail.example.com:465", "mail.example.com", 465, "smtps"),
        ("mail.example.com:587", "mail.example.com", 587, "submission"),
        ("mail.example.com:2525", "mail.example.com", 2525, "smtp"),
        ("submission://[2001:db8::1]:587", "2001:db8::1", 587, "submission"),
        ("[::1]:465", "::1", 465, "smtps"),
        ("smtp://2001:db8::1", "2001:db8::1", 25, "smtp"),
    ],
)
def test_parse_target(url: str, host: str, port: int, mode: str) -> None:
    target = parse_target(url)
    assert (target.url, target.host, target.port, target.mode) == (url, host, port, mode)


@pytest.mark.parametrize("url", ["", "http://x", "mail.example.com", "x:0", "x:65536", "x:abc", "smtp://",
                                 "smtp://[::1", "smtp://user@host", "smtp://a b"])
def test_parse_target_rejects(url: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_target(url)
    assert err.value.exit_code == 2 and "HOST:PORT" in str(err.value)


@pytest.mark.parametrize(
    ("name", "dns", "ips", "ok"),
    [
        ("mail.example.com", ["mail.example.com"], [], True),
        ("MAIL.Example.COM.", ["mail.example.com"], [], True),
        ("mail.example.com", ["*.example.com"], [], True),
        ("example.com", ["*.example.com"], [], False),
        ("a.b.example.com", ["*.example.com"], [], False),
        ("mail.com", ["*.com"], [], False),
        ("mail.example.com", ["m*.example.com"], [], False),
        ("mail.example.com", [], [], False),
        ("127.0.0.1", ["127.0.0.1"], [], False),  # an IP must be an iPAddress SAN
        ("127.0.0.1", [], ["127.0.0.1"], True),
        ("2001:db8::1", [], ["2001:db8:0:0:0:0:0:1"], True),
        ("bücher.example", ["xn--bcher-kva.example"], [], True),
    ],
)
def test_name_matches_san_only(name: str, dns: list[str], ips: list[str], ok: bool) -> None:
    assert name_matches(name, dns, ips) is ok


@given(st.from_regex(r"[a-z][a-z0-9-]{0,10}\.example\.com", fullmatch=True))
def test_wildcard_matches_exactly_one_label(host: str) -> None:
    assert name_matches(host, ["*.example.com"], [])
    assert not name_matches("x." + host, ["*.example.com"], [])


def _serve(payload: bytes) -> tuple[socket.socket, int]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def run() -> None:
        conn, _ = listener.accept()
        conn.sendall(payload)
        try:
            conn.recv(1024)
        except OSError:
            pass
        conn.close()

    threading.Thread(target=run, daemon=True).start()
    return listener, int(listener.getsockname()[1])


def test_multiline_reply_and_keywords() -> None:
    listener, port = _serve(b"250-mx.example\r\n250-PIPELINING\r\n250-AUTH PLAIN LOGIN\r\n250 STARTTLS\r\n")
    with listener, SmtpSession("127.0.0.1", port, 2, transcript=[]) as s:
        s.connect()
        reply = s.read_reply("reply to EHLO")
        assert reply.code == 250
        assert reply.ehlo_keywords() == {"PIPELINING": "", "AUTH": "PLAIN LOGIN", "STARTTLS": ""}
        assert s.transcript is not None and s.transcript[-1] == "S: 250 STARTTLS"


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (b"HTTP/1.0 200 OK\r\n", "garbage"),
        (b"250-a\r\n354 b\r\n", "garbage"),
        (b"220" + b"x" * 5000, "garbage"),
        (b"220-partial\r\n", "timeout"),  # half a reply, then nothing: the deadline ends it
        (b"\x16\x03\x01\x00\x05hello\r\n", "garbage"),
    ],
)
def test_bad_replies_raise_session_error(payload: bytes, kind: str) -> None:
    listener, port = _serve(payload)
    with listener, SmtpSession("127.0.0.1", port, 1, transcript=[]) as s:
        s.connect()
        with pytest.raises(SessionError) as err:
            s.read_reply("banner")
        assert err.value.kind == kind
        assert all("\x16" not in line for line in s.transcript or [])  # control bytes escaped


def test_report_json_and_text() -> None:
    report = CheckReport("smtp://x:25")
    report.add("banner", "PASS", "220 hi")
    report.add("starttls-offered", "FAIL", "no STARTTLS", "enable it")
    report.skip(["starttls", "tls-handshake"], "starttls-offered failed")
    doc = report.to_json()
    assert doc["ok"] is False and doc["target"] == "smtp://x:25"
    assert doc["checks"][1] == {"id": "starttls-offered", "status": "FAIL", "detail": "no STARTTLS",
                                "fix": "enable it"}
    assert doc["checks"][0] == {"id": "banner", "status": "PASS", "detail": "220 hi"}
    text = render_text(report)
    assert "fix: enable it" in text and "SKIP  2 checks not run (starttls-offered failed)" in text
    assert text.splitlines()[-1].startswith("smtp://x:25: FAILED (1 PASS, 1 FAIL, 2 SKIP)")


# ----- the DER reader agrees with cryptography ------------------------------------
def _cryptography_view(der: bytes) -> dict[str, object]:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    cert = x509.load_der_x509_certificate(der)
    key = cert.public_key()
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns, ips = san.get_values_for_type(x509.DNSName), [str(i) for i in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        dns, ips = [], []
    try:
        eku = [o.dotted_string for o in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value]
    except x509.ExtensionNotFound:
        eku = None
    algo = cert.signature_hash_algorithm
    return {
        "subject": cert.subject.rfc4514_string() or "(empty)",
        "issuer": cert.issuer.rfc4514_string() or "(empty)",
        "serial": format(cert.serial_number, "x"),
        "not_before": cert.not_valid_before_utc,
        "not_after": cert.not_valid_after_utc,
        "key_bits": key.key_size if isinstance(key, rsa.RSAPublicKey) else key.curve.key_size
        if isinstance(key, ec.EllipticCurvePublicKey) else 256,
        "signature_hash": algo.name if algo else "",
        "dns_names": dns,
        "ip_names": ips,
        "eku": eku,
        "self_signed": cert.issuer == cert.subject,
    }


def test_der_reader_matches_cryptography(zoo_pki: ZooPki) -> None:
    import shutil

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from certkit.check.der import EKU_NAMES, parse_certificate
    from tests.conftest import skip_or_fail

    leaves = [
        zoo_pki.leaf("good"),
        zoo_pki.leaf("rsa1024", key="rsa1024"),
        zoo_pki.leaf("rsa2048", key="rsa2048"),
        zoo_pki.leaf("cn-only", names=()),
        zoo_pki.leaf("selfsigned", self_signed=True),
        zoo_pki.leaf("client-eku", eku=(ExtendedKeyUsageOID.CLIENT_AUTH,)),
        zoo_pki.leaf("no-eku", eku=None),
        zoo_pki.leaf("odd-name", cn='a,b+c "q" #x', names=("xn--bcher-kva.example", "::1", "10.0.0.1")),
    ]
    if not shutil.which("openssl"):
        skip_or_fail("openssl not installed (makes the SHA-1 certificate)")
    leaves.append(zoo_pki.sha1_leaf())
    pems = [leaf.cert_pem for leaf in leaves] + [zoo_pki.ca_file.read_bytes()]
    for pem in pems:
        der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
        mine = parse_certificate(der)
        theirs = _cryptography_view(der)
        if theirs["eku"] is not None:
            theirs["eku"] = [EKU_NAMES.get(o, o) for o in theirs["eku"]]  # type: ignore[union-attr]
        for key, value in theirs.items():
            assert mine[key] == value, (key, mine[key], value)


@pytest.mark.parametrize("junk", [b"", b"\x30", b"\x30\x82\xff\xff", b"\x30\x03\x02\x01\x01", b"\x04\x00" * 8])
def test_der_reader_rejects_junk(junk: bytes) -> None:
    from certkit.check.der import parse_certificate

    with pytest.raises(ValueError):
        parse_certificate(junk)


@pytest.mark.parametrize("host", ["a..b", "ä..b", ".", "x" * 64 + ".example", "a." * 130 + "com"])
def test_unresolvable_names_are_bad_targets(host: str) -> None:
    """Names the idna codec refuses are the user's typo (exit 2), not a thread traceback at lookup time."""
    with pytest.raises(UsageError, match="is not a host name"):
        parse_target(f"smtp://{host}:25")


def test_session_lookup_of_an_unencodable_name_is_a_connect_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    escaped: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: escaped.append(args.exc_value))
    session = SmtpSession("a..b", 25, 2.0)
    with pytest.raises(SessionError) as info:
        session.connect()
    assert info.value.kind == "connect" and "cannot resolve a..b" in info.value.message
    assert "label empty or too long" in info.value.message  # the codec's reason, not a guess
    assert escaped == []  # nothing escaped the lookup thread (it used to print a traceback)
