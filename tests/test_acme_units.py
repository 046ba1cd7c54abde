"""ACME building blocks without a CA: ARI, polling, problems, the http-01 responder, Link parsing.

ARI (RFC 9773) is exercised against a tiny local HTTP server, since Debian's
Pebble 2.4 predates it; the end-to-end ARI test puts a small directory in
front of Pebble that adds ``renewalInfo``.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import itertools
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from certkit.acme import LETSENCRYPT, LETSENCRYPT_STAGING, ari, http01, resolve_server
from certkit.errors import AcmeError, UsageError
from certkit.polling import Backoff, parse_retry_after


def make_cert(serial: int, aki: bytes | None = b"\x01\x02\x03\xfa\xfb") -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ari.example.com")])
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(serial).not_valid_before(now).not_valid_after(now + dt.timedelta(days=90)))
    if aki is not None:
        builder = builder.add_extension(x509.AuthorityKeyIdentifier(aki, None, None), critical=False)
    return builder.sign(key, hashes.SHA256())


# ----- ARI ---------------------------------------------------------------------------------------


def test_cert_id_rfc9773_example() -> None:
    # RFC 9773 section 4.1: AKI 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4,
    # serial 00:87:65:43:21 -> "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"
    cert = make_cert(0x87654321, bytes.fromhex("69885B6B87464041E1B37B847BA0AE2CDE01C8D4"))
    assert ari.cert_id(cert) == "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"


@given(st.integers(min_value=1, max_value=2**159 - 1))
def test_serial_bytes_is_der_integer_content(serial: int) -> None:
    encoded = ari.serial_bytes(serial)
    assert int.from_bytes(encoded, "big", signed=True) == serial
    assert encoded[0] < 0x80  # positive: no sign bit set
    assert len(encoded) == 1 or not (encoded[0] == 0 and encoded[1] < 0x80)  # minimal


def test_cert_id_without_aki() -> None:
    with pytest.raises(ValueError, match="Authority Key Identifier"):
        ari.cert_id(make_cert(5, aki=None))


def test_parse_window_and_retry_after() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    body = {"suggestedWindow": {"start": "2026-02-01T00:00:00.123456789Z", "end": "2026-02-03T00:00:00Z"},
            "explanationURL": "https://ca.example/incident"}
    parsed = ari.parse(body, "3600", now=now)
    assert parsed == {"start": "2026-02-01T00:00:00Z", "end": "2026-02-03T00:00:00Z",
                      "explanation_url": "https://ca.example/incident", "checked": "2026-01-01T00:00:00Z",
                      "retry_after": "2026-01-01T01:00:00Z"}
    assert ari.parse(body, None, now=now)["retry_after"] == "2026-01-01T06:00:00Z"  # default 6 h
    assert ari.parse(body, str(10 * 86400), now=now)["retry_after"] == "2026-01-02T00:00:00Z"  # clamped to 1 day


@pytest.mark.parametrize("body", [
    {}, {"suggestedWindow": {}}, {"suggestedWindow": {"start": "2026-02-03T00:00:00Z", "end": "2026-02-01T00:00:00Z"}},
    {"suggestedWindow": {"start": "garbage", "end": "2026-02-01T00:00:00Z"}}, [],
])
def test_parse_rejects_bad_bodies(body: Any) -> None:
    with pytest.raises(ValueError):
        ari.parse(body)


class _AriHandler(BaseHTTPRequestHandler):
    paths: list[str]
    directory: dict[str, Any]

    def do_GET(self) -> None:
        self.paths.append(self.path)
        if self.path == "/dir":
            body, headers = self.directory, {}
        elif self.path.startswith("/renewal-info/"):
            body = {"suggestedWindow": {"start": "2026-03-01T00:00:00Z", "end": "2026-03-02T00:00:00Z"}}
            headers = {"Retry-After": "120"}
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on a free loopback port for the duration of the block; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def ari_server() -> Iterator[tuple[str, type[_AriHandler]]]:
    handler = type("H", (_AriHandler,), {"paths": [], "directory": {}})
    with _serving(handler) as url:
        yield url, handler


def test_fetch_from_a_local_server(ari_server: tuple[str, type[_AriHandler]]) -> None:
    import requests

    base, handler = ari_server
    cert = make_cert(0x87654321, bytes.fromhex("69885B6B87464041E1B37B847BA0AE2CDE01C8D4"))
    window = ari.fetch(requests.get, base + "/renewal-info", cert)
    assert handler.paths == ["/renewal-info/aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"]
    assert window["start"] == "2026-03-01T00:00:00Z" and window["end"] == "2026-03-02T00:00:00Z"
    checked = dt.datetime.fromisoformat(window["checked"].replace("Z", "+00:00"))
    retry = dt.datetime.fromisoformat(window["retry_after"].replace("Z", "+00:00"))
    assert (retry - checked).total_seconds() == 120


def test_renewal_info_public_api(ari_server: tuple[str, type[_AriHandler]]) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    from certkit.acme import renewal_info
    from certkit.settings import AcmeSettings

    base, handler = ari_server
    handler.directory = {"newNonce": base + "/n", "newAccount": base + "/a", "newOrder": base + "/o",
                         "renewalInfo": base + "/renewal-info"}
    pem = make_cert(77).public_bytes(Encoding.PEM)
    window = renewal_info(AcmeSettings(server=base + "/dir"), pem)
    assert window is not None and window["start"] == "2026-03-01T00:00:00Z"
    handler.directory = {"newNonce": base + "/n", "newAccount": base + "/a", "newOrder": base + "/o"}
    assert renewal_info(AcmeSettings(server=base + "/dir"), pem, base + "/dir") is not None  # directory cached
    from certkit.acme.account import get_directory

    get_directory(base + "/dir", None, refresh=True)
    assert renewal_info(AcmeSettings(server=base + "/dir"), pem) is None  # no renewalInfo offered


def test_new_order_carries_replaces() -> None:
    from acme import messages

    from certkit.acme.order import NewOrder

    ident = messages.Identifier(typ=messages.IDENTIFIER_FQDN, value="a.example.com")
    with_replaces = NewOrder(identifiers=[ident], replaces="aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE").to_partial_json()
    assert with_replaces["replaces"] == "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"
    assert "replaces" not in NewOrder(identifiers=[ident]).to_partial_json()
    assert NewOrder(identifiers=[ident], profile="tlsserver").to_partial_json()["profile"] == "tlsserver"


# ----- polling -------------------------------------------------------------------------------------


def test_backoff_grows_honours_retry_after_and_deadline() -> None:
    clock = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        clock[0] += s

    backoff = Backoff(deadline=10.0, sleep=sleep, clock=lambda: clock[0])
    for _ in range(4):
        assert backoff.wait()
    assert slept[0] == pytest.approx(0.05) and slept[1] == pytest.approx(0.08) and slept[3] > slept[2]
    assert backoff.wait(retry_after=2.0) and slept[-1] == 2.0
    assert backoff.wait(retry_after=600.0) and slept[-1] < 10  # capped by the deadline
    assert not backoff.wait()


def test_parse_retry_after() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=lambda: 1445412470.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=lambda: 1445412490.0) == 0.0


# ----- servers, problems, links --------------------------------------------------------------------


def test_resolve_server() -> None:
    assert resolve_server("letsencrypt") == LETSENCRYPT
    assert resolve_server("LetsEncrypt-Staging") == LETSENCRYPT_STAGING
    assert resolve_server("https://ca.example/dir") == "https://ca.example/dir"
    with pytest.raises(UsageError):
        resolve_server("ca.example")


def test_problem_with_subproblems_is_readable() -> None:
    from acme import messages

    from certkit.acme.problems import translate

    problem = messages.Error.from_json({
        "type": "urn:ietf:params:acme:error:rejectedIdentifier", "detail": "some names are forbidden",
        "subproblems": [
            {"type": "urn:ietf:params:acme:error:rejectedIdentifier", "detail": "blocked by policy",
             "identifier": {"type": "dns", "value": "bad.example"}},
            {"type": "urn:ietf:params:acme:error:caa", "detail": "CAA forbids",
             "identifier": {"type": "dns", "value": "caa.example"}},
        ]})
    with pytest.raises(AcmeError) as info, translate("https://ca.example/dir", "create the order"):
        raise problem
    text = str(info.value)
    assert "refused to create the order: rejectedIdentifier: some names are forbidden" in text
    assert "bad.example: rejectedIdentifier: blocked by policy" in text
    assert "caa.example: caa: CAA forbids" in text
    assert info.value.exit_code == 1


def test_problems_blaming_the_input_exit_2() -> None:
    from acme import messages

    from certkit.acme.problems import translate

    problem = messages.Error.from_json({"type": "urn:ietf:params:acme:error:invalidContact",
                                        "detail": 'contact email "x" is invalid'})
    with pytest.raises(UsageError) as info, translate("https://ca.example/dir", "create the ACME account"):
        raise problem
    assert info.value.exit_code == 2 and "--email" in (info.value.hint or "")
    unknown = messages.Error.from_json({"type": "urn:example:odd", "detail": "odd"})
    with pytest.raises(AcmeError) as info2, translate("https://ca.example/dir", "create the order"):
        raise unknown
    assert info2.value.exit_code == 1 and info2.value.hint == "the CA's message says why; the CA is https://ca.example/dir"


def test_translate_network_errors() -> None:
    import requests

    from certkit.acme.problems import translate

    with pytest.raises(AcmeError, match="cannot reach"), translate("https://ca.example/dir"):
        raise requests.exceptions.ConnectionError("refused")
    with pytest.raises(AcmeError, match="--ca-bundle"), translate("https://ca.example/dir"):
        raise requests.exceptions.SSLError("bad cert")
    with pytest.raises(UsageError), translate("https://ca.example/dir"):
        raise UsageError("passes through")


def test_link_parsing_keeps_every_alternate() -> None:
    import requests
    from urllib3 import HTTPHeaderDict  # type: ignore[attr-defined]

    response = requests.Response()
    headers = HTTPHeaderDict()
    headers.add("Link", '<https://ca/cert/1/alt/1>;rel="alternate"')
    headers.add("Link", '<https://ca/cert/1/alt/2>; rel="alternate", <https://ca/dir>;rel="index"')
    response.raw = type("Raw", (), {"headers": headers})()
    response.headers.update({"Link": ", ".join(headers.getlist("Link"))})
    from certkit.acme.net import links

    assert links(response, "alternate") == ["https://ca/cert/1/alt/1", "https://ca/cert/1/alt/2"]
    assert links(response, "index") == ["https://ca/dir"]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def test_http01_responder_serves_tokens_only_is_shared_and_stops_instantly() -> None:
    first = http01.acquire("127.0.0.1", 0)
    port = first.bound_port
    try:
        first.add("tok-1", "tok-1.thumb")
        base = f"http://127.0.0.1:{port}"
        assert _get(base + "/.well-known/acme-challenge/tok-1") == (200, b"tok-1.thumb")
        assert _get(base + "/.well-known/acme-challenge/other")[0] == 404
        assert _get(base + "/etc/passwd")[0] == 404
        second = http01.acquire("127.0.0.1", 0)
        assert second is first and first.users == 2
        http01.release(second)
        assert _get(base + "/.well-known/acme-challenge/tok-1")[0] == 200  # still serving for the first user
    finally:
        start = time.perf_counter()
        http01.release(first)
        stop_time = time.perf_counter() - start
    assert stop_time < 0.1, stop_time  # no 0.5 s socketserver poll
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_webroot_writes_and_cleans(tmp_path: Path) -> None:
    root = tmp_path / "www"
    root.mkdir()
    (root / ".well-known").mkdir()
    (root / ".well-known" / "security.txt").write_text("keep me")
    webroot = http01.Webroot(str(root))
    webroot.add("abc", "abc.thumb")
    token = root / ".well-known" / "acme-challenge" / "abc"
    assert token.read_text() == "abc.thumb" and oct(token.stat().st_mode & 0o777) == "0o644"
    webroot.cleanup()
    assert not (root / ".well-known" / "acme-challenge").exists()
    assert (root / ".well-known" / "security.txt").read_text() == "keep me"
    with pytest.raises(UsageError, match="not a folder"):
        http01.Webroot(str(tmp_path / "missing"))


def test_dns_resolver_spec() -> None:
    from certkit.acme.dnswait import parse_resolver

    assert parse_resolver("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_resolver("8.8.8.8") == ("8.8.8.8", 53)
    assert parse_resolver("[::1]:53") == ("::1", 53)
    with pytest.raises(UsageError):
        parse_resolver("1.2.3.4:notaport")


def test_heavy_modules_stay_out_of_the_package_init() -> None:
    import subprocess
    import sys

    code = "import sys, certkit.acme; print(any(m in sys.modules for m in ('acme', 'josepy', 'requests')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout.strip()
    assert out == "False"


class _FlakyAcme(BaseHTTPRequestHandler):
    """Answers POSTs with a scripted list of (status, problem type, Retry-After), then 200."""

    script: list[tuple[int, str, str | None]]
    posts: int

    nonces = itertools.count(1)

    def _nonce(self) -> None:
        # RFC 8555 6.5.1: a nonce is base64url without padding. A counter
        # encoded that way is valid whatever the clock (a decimal timestamp
        # was not at some machine uptimes).
        serial = next(type(self).nonces).to_bytes(8, "big")
        self.send_header("Replay-Nonce", base64.urlsafe_b64encode(serial).rstrip(b"=").decode())

    def do_HEAD(self) -> None:
        self.send_response(200)
        self._nonce()
        self.end_headers()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).posts += 1
        status, typ, retry = self.script.pop(0) if self.script else (200, "", None)
        body = json.dumps({"type": f"urn:ietf:params:acme:error:{typ}", "detail": typ} if typ else {}).encode()
        self.send_response(status)
        self._nonce()
        self.send_header("Content-Type", "application/problem+json" if typ else "application/json")
        if retry is not None:
            self.send_header("Retry-After", retry)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def flaky() -> Iterator[tuple[str, type[_FlakyAcme]]]:
    handler = type("F", (_FlakyAcme,), {"script": [], "posts": 0})
    with _serving(handler) as url:
        yield url, handler


def _network(base: str, echo: Any = None) -> Any:
    from josepy.jwk import JWKEC

    from certkit.acme.net import Network

    key = JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    return Network(key, account_uri=base + "/acct/1", new_nonce_url=base + "/nonce",
                   echo=echo or (lambda s: None))


def test_bad_nonce_retried_many_times(flaky: tuple[str, type[_FlakyAcme]]) -> None:
    base, handler = flaky
    handler.script = [(400, "badNonce", None)] * 5  # the library alone gives up after one retry
    response = _network(base).post_as_get(base + "/order/1")
    assert response.status_code == 200 and handler.posts == 6


def test_retry_after_on_503_is_waited_and_reported(flaky: tuple[str, type[_FlakyAcme]]) -> None:
    base, handler = flaky
    handler.script = [(503, "serverInternal", "1")]
    said: list[str] = []
    waits: list[float] = []
    network = _network(base, said.append)
    network.sleep = waits.append
    response = network.post_as_get(base + "/order/1")
    assert response.status_code == 200 and waits == [1.0] and handler.posts == 2
    assert said and "retry after 1 s" in said[0]


def test_long_rate_limit_is_reported_not_waited(flaky: tuple[str, type[_FlakyAcme]]) -> None:
    from certkit.acme.problems import translate

    base, handler = flaky
    handler.script = [(429, "rateLimited", "3600")]
    waits: list[float] = []
    network = _network(base)
    network.sleep = waits.append
    with pytest.raises(AcmeError, match="rateLimited") as info, translate(base, "create the order"):
        network.post(base + "/new-order", None)
    assert waits == []
    assert "letsencrypt-staging" in str(info.value)


@pytest.mark.integration  # a second or more of real processes
def test_dns_hook_serialises_values_of_one_name(tmp_path: Path) -> None:
    """A wildcard and its base name share one record name: a read-add-write hook must not run for both at once.
    Different names still run in parallel."""
    from certkit.acme import dns01

    log = tmp_path / "log"
    hook = tmp_path / "hook.sh"
    hook.write_text('#!/bin/sh\necho "start $CERTKIT_DNS_NAME $CERTKIT_DNS_VALUE" >> "$1"\nsleep 0.4\n'
                    'echo "end $CERTKIT_DNS_NAME $CERTKIT_DNS_VALUE" >> "$1"\n')
    hook.chmod(0o755)
    records = [dns01.TxtRecord("a.example", "_acme-challenge.a.example", "v1"),
               dns01.TxtRecord("a.example", "_acme-challenge.a.example", "v2"),
               dns01.TxtRecord("b.example", "_acme-challenge.b.example", "v3")]
    dns01.present(f"{hook} {log}", records)
    lines = log.read_text().splitlines()
    a_lines = [ln for ln in lines if "a.example" in ln]
    assert a_lines == ["start _acme-challenge.a.example v1", "end _acme-challenge.a.example v1",
                       "start _acme-challenge.a.example v2", "end _acme-challenge.a.example v2"]
    # b ran alongside a's turns, not after them
    assert lines.index("start _acme-challenge.b.example v3") < lines.index("start _acme-challenge.a.example v2")
