"""ACME issuance against a real Pebble (Debian package), on loopback ports.

Every issued chain is checked with `openssl verify` against the roots that
Pebble's management API serves; failures must exit 1 with a clear message
and leave no lineage behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography import x509

from certkit import keys, names
from certkit.cli import cli
from certkit.errors import AcmeError, UsageError
from certkit.settings import AcmeSettings
from certkit.store import Store
from tests.servers.net import free_port
from tests.servers.pebble import PebbleServer

pytestmark = pytest.mark.pebble

ROOT = Path(__file__).resolve().parents[1]


def acme_args(server: PebbleServer, *extra: str) -> list[str]:
    return ["--acme", "--server", server.directory_url, "--ca-bundle", str(server.ca_bundle),
            "--http-port", str(server.http_port), "--http-address", "127.0.0.1", "--agree-tos", *extra]


def settings_for(pebble_server: PebbleServer, **kw: Any) -> AcmeSettings:
    base: dict[str, Any] = dict(server=pebble_server.directory_url, agree_tos=True,
                                ca_bundle=str(pebble_server.ca_bundle), http_port=pebble_server.http_port,
                                http_address="127.0.0.1")
    base.update(kw)
    return AcmeSettings(**base)


def issue_cli(home: Path, *args: str) -> Any:
    result = CliRunner().invoke(cli, ["--home", str(home), "issue", *args], catch_exceptions=False)
    return result


def openssl_verify(server: PebbleServer, tmp: Path, cert_pem: bytes, chain_pem: bytes, root_index: int = 0) -> None:
    (tmp / "root.pem").write_bytes(server.roots_pem(root_index))
    (tmp / "leaf.pem").write_bytes(cert_pem)
    (tmp / "chain.pem").write_bytes(chain_pem)
    proc = subprocess.run(["openssl", "verify", "-CAfile", str(tmp / "root.pem"), "-untrusted",
                           str(tmp / "chain.pem"), str(tmp / "leaf.pem")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def sans(cert_pem: bytes) -> set[str]:
    cert = x509.load_pem_x509_certificate(cert_pem)
    return set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName))


def port_is_free(port: int) -> bool:
    """Nothing listens on the port any more (connections are refused)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


# ----- http-01 through the CLI ------------------------------------------------------------------


def test_issue_http01_cli_multi_name_chain_verifies(pebble: PebbleServer, home: Path, tmp_path: Path) -> None:
    result = issue_cli(home, "--cn", "mail.example.com", "--san", "smtp.example.com", "--san", "mx.example.com",
                       *acme_args(pebble), "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)  # --json output is JSON only: nothing else on stdout
    assert record["source"] == pebble.directory_url
    assert record["domains"] == ["mail.example.com", "smtp.example.com", "mx.example.com"]
    live = Path(record["paths"]["cert"]).parent
    cert_pem = (live / "cert.pem").read_bytes()
    assert sans(cert_pem) == {"mail.example.com", "smtp.example.com", "mx.example.com"}
    openssl_verify(pebble, tmp_path, cert_pem, (live / "chain.pem").read_bytes())
    assert (live / "fullchain.pem").read_bytes() == cert_pem + (live / "chain.pem").read_bytes()
    settings = Store(home).load_settings("mail.example.com")
    assert settings.acme is not None and settings.acme.http_port == pebble.http_port
    assert settings.acme.agree_tos and settings.acme.ca_bundle == str(pebble.ca_bundle)
    assert port_is_free(pebble.http_port)  # the standalone responder stopped


def test_account_reused_and_private(pebble: PebbleServer, home: Path) -> None:
    for cn in ("a.example.com", "b.example.com", "a.example.com"):
        result = issue_cli(home, "--cn", cn, *acme_args(pebble, "--email", "admin@example.com"))
        assert result.exit_code == 0, result.output
    accounts = list((home / "accounts").iterdir())
    assert len(accounts) == 1
    for f in accounts[0].iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    info = json.loads((accounts[0] / "account.json").read_text())
    assert info["uri"].startswith("https://127.0.0.1:") and info["email"] == "admin@example.com"
    assert "Issued version 2" in result.output
    assert Store(home).versions("a.example.com") == [1, 2]


def test_renewal_reissues_from_stored_settings(pebble: PebbleServer, home: Path, tmp_path: Path) -> None:
    from certkit.issuing import issue

    assert issue_cli(home, "--cn", "re.example.com", "--key", "ec256", *acme_args(pebble)).exit_code == 0
    store = Store(home)
    settings = store.load_settings("re.example.com")
    issue(store, settings, echo=lambda s: None)
    assert store.live_version("re.example.com") == 2
    files = store.read_version("re.example.com", 2)
    openssl_verify(pebble, tmp_path, files.cert_pem, files.chain_pem)


def test_reuse_key_keeps_the_key(pebble: PebbleServer, home: Path) -> None:
    args = ["--cn", "dane.example.com", *acme_args(pebble, "--reuse-key")]
    assert issue_cli(home, *args).exit_code == 0
    assert issue_cli(home, *args).exit_code == 0
    store = Store(home)
    assert store.read_version("dane.example.com", 1).key_pem == store.read_version("dane.example.com", 2).key_pem


def test_subprocess_end_to_end(pebble: PebbleServer, home: Path) -> None:
    env = {**os.environ, "CERTKIT_HOME": str(home), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "certkit", "issue", "--cn", "e2e.example.com",
                           *acme_args(pebble)], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "certificate from " + pebble.directory_url in proc.stdout
    assert "e2e.example.com" in proc.stdout


def test_subprocess_unreachable_server_exit_1(home: Path) -> None:
    port = free_port()
    env = {**os.environ, "CERTKIT_HOME": str(home), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "certkit", "issue", "--cn", "x.example.com", "--acme",
                           "--server", f"https://127.0.0.1:{port}/dir", "--agree-tos"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1
    assert "cannot reach the ACME server" in proc.stderr and "Traceback" not in proc.stderr
    assert Store(home).names() == []


# ----- failures: clear messages, nothing half-written -----------------------------------------------


def test_refused_authorization_exit_1_nothing_stored(pebble: PebbleServer, home: Path) -> None:
    # certkit listens on another port than the one Pebble's VA connects to: validation fails.
    args = acme_args(pebble)
    args[args.index("--http-port") + 1] = str(free_port())
    result = CliRunner().invoke(cli, ["--home", str(home), "issue", "--cn", "bad.example.com",
                                      "--san", "bad2.example.com", *args])
    assert result.exit_code == 1, result.output
    assert "could not validate these names" in result.output
    assert "bad.example.com: connection" in result.output and "bad2.example.com: connection" in result.output
    assert "Traceback" not in result.output
    # As docs/acme.md shows it: one line per name, then the hint on a line of its own.
    assert "\n - the CA could not connect to your server" in result.output, result.output
    store = Store(home)
    assert store.names() == [] and not (home / "lineages" / "bad.example.com").exists()


def test_unreachable_server_library_error(home: Path) -> None:
    from certkit.acme import obtain

    store = Store(home)
    settings = AcmeSettings(server=f"https://127.0.0.1:{free_port()}/dir", agree_tos=True)
    with pytest.raises(AcmeError, match="cannot reach the ACME server"), store.lock():
        obtain(store, settings, [names.parse_name("x.example.com")], keys.generate("ec256"))


def test_wrong_ca_bundle_says_so(pebble: PebbleServer, home: Path) -> None:
    args = [a for a in acme_args(pebble) if a not in ("--ca-bundle", str(pebble.ca_bundle))]
    result = CliRunner().invoke(cli, ["--home", str(home), "issue", "--cn", "tls.example.com", *args])
    assert result.exit_code == 1
    assert "cannot verify the HTTPS certificate" in result.output and "--ca-bundle" in result.output


def test_terms_not_accepted_exit_2(pebble: PebbleServer, home: Path) -> None:
    args = [a for a in acme_args(pebble) if a != "--agree-tos"]
    result = CliRunner().invoke(cli, ["--home", str(home), "issue", "--cn", "tos.example.com", *args])
    assert result.exit_code == 2, result.output
    assert "terms of service" in result.output and "--agree-tos" in result.output
    assert not (home / "accounts").exists() or not any((home / "accounts").iterdir())


def test_invalid_email_exit_2_nothing_stored(pebble: PebbleServer, home: Path) -> None:
    result = CliRunner().invoke(cli, ["--home", str(home), "issue", "--cn", "mail.example.com",
                                      *acme_args(pebble, "--email", "not-an-email")])
    assert result.exit_code == 2, result.output
    assert "invalidContact" in result.output and "check --email" in result.output
    assert Store(home).names() == []
    assert not (home / "accounts").exists() or not any((home / "accounts").rglob("*.json"))


def test_wildcard_needs_dns01_exit_2(pebble: PebbleServer, home: Path) -> None:
    result = CliRunner().invoke(cli, ["--home", str(home), "issue", "--cn", "*.example.com", *acme_args(pebble)])
    assert result.exit_code == 2
    assert "dns-01" in result.output


def test_http_port_in_use_exit_1(pebble: PebbleServer, home: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args = acme_args(pebble)
        args[args.index("--http-port") + 1] = str(port)
        result = CliRunner().invoke(cli, ["--home", str(home), "issue", "--cn", "busy.example.com", *args])
    assert result.exit_code == 1
    assert "another program uses the port" in result.output and "--webroot" in result.output
    assert Store(home).names() == []


# ----- webroot and dns-01 -------------------------------------------------------------------------


@pytest.fixture
def web_server(pebble: PebbleServer, tmp_path: Path) -> Iterator[Path]:
    """A plain static web server on Pebble's http-01 port, serving tmp_path/www."""
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", pebble.http_port), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield root
    finally:
        server.shutdown()
        server.server_close()


def test_webroot(pebble: PebbleServer, home: Path, web_server: Path, tmp_path: Path) -> None:
    result = issue_cli(home, "--cn", "web.example.com", *acme_args(pebble, "--webroot", str(web_server)))
    assert result.exit_code == 0, result.output
    assert not (web_server / ".well-known").exists()  # tokens and the folders certkit made are gone
    files = Store(home).read_version("web.example.com", 1)
    openssl_verify(pebble, tmp_path, files.cert_pem, files.chain_pem)
    assert Store(home).load_settings("web.example.com").acme.webroot == str(web_server)  # type: ignore[union-attr]


def write_dns_hook(tmp_path: Path, server: PebbleServer) -> tuple[str, Path]:
    log = tmp_path / "hook.log"
    hook = tmp_path / "dns_hook.py"
    hook.write_text(f"""
import json, os, urllib.request
env = os.environ
action, name, value = env["CERTKIT_DNS_ACTION"], env["CERTKIT_DNS_NAME"], env["CERTKIT_DNS_VALUE"]
with open({str(log)!r}, "a") as fh:
    fh.write(f"{{action}} {{name}} {{os.environ['CERTKIT_DOMAIN']}}\\n")
if action == "present":
    path, body = "/set-txt", {{"host": name + ".", "value": value}}
else:
    path, body = "/clear-txt", {{"host": name + "."}}
req = urllib.request.Request({server.challtest_url!r} + path, data=json.dumps(body).encode(), method="POST")
urllib.request.urlopen(req).read()
""")
    return f"{sys.executable} {hook}", log


def test_dns01_wildcard_with_resolver(pebble: PebbleServer, home: Path, tmp_path: Path) -> None:
    hook, log = write_dns_hook(tmp_path, pebble)
    result = issue_cli(home, "--cn", "*.wild.example", "--san", "wild.example",
                       *acme_args(pebble, "--dns-hook", hook, "--dns-resolver", f"127.0.0.1:{pebble.dns_port}"))
    assert result.exit_code == 0, result.output
    store = Store(home)
    assert store.names() == ["wildcard.wild.example"]
    files = store.read_version("wildcard.wild.example", 1)
    assert sans(files.cert_pem) == {"*.wild.example", "wild.example"}
    openssl_verify(pebble, tmp_path, files.cert_pem, files.chain_pem)
    lines = log.read_text().splitlines()
    assert lines.count("present _acme-challenge.wild.example wild.example") == 2  # two values, one name
    assert lines.count("cleanup _acme-challenge.wild.example wild.example") == 2
    settings = store.load_settings("wildcard.wild.example")
    assert settings.acme is not None and settings.acme.challenge == "dns-01" and settings.acme.dns_hook == hook


def test_dns01_failing_hook_exit_1(pebble: PebbleServer, home: Path, tmp_path: Path) -> None:
    hook = tmp_path / "fail.sh"
    hook.write_text("#!/bin/sh\necho 'no API token' >&2\nexit 3\n")
    hook.chmod(0o755)
    result = CliRunner().invoke(cli, ["--home", str(home), "issue", "--cn", "hookfail.example.com",
                                      *acme_args(pebble, "--dns-hook", str(hook))])
    assert result.exit_code == 1
    assert "the DNS hook failed" in result.output and "no API token" in result.output
    assert Store(home).names() == []


def test_dns01_hook_never_receives_the_pfx_password(pebble: PebbleServer, home: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 10 item 2: a real dns-01 hook dumps its environment; certkit's secret is not in it."""
    hook, log = write_dns_hook(tmp_path, pebble)
    dump = tmp_path / "hook-env.json"
    wrapper = tmp_path / "dump_env.py"
    wrapper.write_text(f"import json, os, runpy\n"
                       f"open({str(dump)!r}, 'w').write(json.dumps(dict(os.environ)))\n"
                       f"runpy.run_path({hook.split(' ', 1)[1]!r})\n")
    monkeypatch.setenv("CERTKIT_PFX_PASSWORD", "s3cret-pfx-password")
    result = issue_cli(home, "--cn", "envdump.example", "--pfx",
                       *acme_args(pebble, "--dns-hook", f"{sys.executable} {wrapper}",
                                  "--dns-resolver", f"127.0.0.1:{pebble.dns_port}"))
    assert result.exit_code == 0, result.output
    seen = json.loads(dump.read_text())
    assert seen["CERTKIT_DNS_NAME"] == "_acme-challenge.envdump.example"  # the hook really ran
    assert "CERTKIT_PFX_PASSWORD" not in seen
    assert "s3cret-pfx-password" not in json.dumps(seen)
    assert "s3cret-pfx-password" not in result.output


# ----- EAB, alternate chains, nonce rejection, concurrency ----------------------------------------


def test_eab(pebble_eab: PebbleServer, home: Path, tmp_path: Path) -> None:
    no_eab = CliRunner().invoke(cli, ["--home", str(home), "issue", "--cn", "eab.example.com",
                                      *acme_args(pebble_eab)])
    assert no_eab.exit_code == 2 and "external account binding" in no_eab.output
    bad = tmp_path / "bad.key"
    bad.write_text("c29tZXRoaW5nLWVsc2UtZW50aXJlbHktMzItYnl0ZXMhIQ\n")
    wrong = CliRunner().invoke(cli, ["--home", str(home), "issue", "--cn", "eab.example.com",
                                     *acme_args(pebble_eab, "--eab-kid", "kid-1", "--eab-hmac-key-file", str(bad))])
    assert wrong.exit_code == 1 and "refused" in wrong.output
    binary = tmp_path / "binary.key"
    binary.write_bytes(b"\xff\xfe\x00secret\n")
    undecodable = CliRunner().invoke(cli, ["--home", str(home), "issue", "--cn", "eab.example.com",
                                           *acme_args(pebble_eab, "--eab-kid", "kid-1", "--eab-hmac-key-file",
                                                      str(binary))])
    assert undecodable.exit_code == 2 and "is not text" in undecodable.output, undecodable.output
    assert "secret" not in undecodable.output and Store(home).names() == []
    good = tmp_path / "eab.key"
    good.write_text(pebble_eab.eab_keys["kid-1"] + "\n")
    ok = issue_cli(home, "--cn", "eab.example.com",
                   *acme_args(pebble_eab, "--eab-kid", "kid-1", "--eab-hmac-key-file", str(good)))
    assert ok.exit_code == 0, ok.output
    files = Store(home).read_version("eab.example.com", 1)
    openssl_verify(pebble_eab, tmp_path, files.cert_pem, files.chain_pem)


def test_preferred_chain(pebble_alt_roots: PebbleServer, home: Path, tmp_path: Path) -> None:
    alt_root = x509.load_pem_x509_certificate(pebble_alt_roots.roots_pem(2))
    alt_cn = alt_root.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    result = issue_cli(home, "--cn", "chain.example.com",
                       *acme_args(pebble_alt_roots, "--preferred-chain", str(alt_cn)))
    assert result.exit_code == 0, result.output
    files = Store(home).read_version("chain.example.com", 1)
    top = x509.load_pem_x509_certificates(files.chain_pem)[-1]
    assert top.issuer == alt_root.subject
    openssl_verify(pebble_alt_roots, tmp_path, files.cert_pem, files.chain_pem, root_index=2)
    # Without a preference: the default chain, to root 0.
    assert issue_cli(home, "--cn", "plain.example.com", *acme_args(pebble_alt_roots)).exit_code == 0
    plain = Store(home).read_version("plain.example.com", 1)
    openssl_verify(pebble_alt_roots, tmp_path, plain.cert_pem, plain.chain_pem, root_index=0)


def test_heavy_nonce_rejection(pebble_nonce50: PebbleServer, home: Path) -> None:
    from certkit.acme import obtain

    store = Store(home)
    settings = settings_for(pebble_nonce50)
    for i in range(4):
        with store.lock():
            result = obtain(store, settings, [names.parse_name(f"n{i}.example.com")], keys.generate("ec256"))
        assert result.cert_pem.startswith(b"-----BEGIN CERTIFICATE-----")


def test_concurrent_obtain_share_one_responder(pebble: PebbleServer, home: Path, tmp_path: Path) -> None:
    from certkit.acme import obtain

    store = Store(home)
    settings = settings_for(pebble, email="many@example.com")
    results: dict[int, Any] = {}
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            results[i] = obtain(store, settings, [names.parse_name(f"c{i}.example.com")], keys.generate("ec256"))
        except BaseException as exc:
            errors.append(exc)

    with store.lock():
        threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors
    assert len(results) == 12 and len({r.cert_pem for r in results.values()}) == 12
    assert len(list((home / "accounts").iterdir())) == 1  # one account for all
    assert port_is_free(pebble.http_port)
    openssl_verify(pebble, tmp_path, results[3].cert_pem, results[3].chain_pem)


def test_obtain_has_no_fixed_sleeps(pebble: PebbleServer, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No fixed 1 s sleeps on the path (the acme library's poll interval): every sleep is short.

    Counted, not timed: the speed itself is a benchmark (bench/acme), not a test.
    """
    from certkit.acme import obtain

    store = Store(home)
    settings = settings_for(pebble)
    slept: list[float] = []
    real_sleep = time.sleep

    def recording_sleep(seconds: float) -> None:
        slept.append(seconds)
        real_sleep(seconds)

    with store.lock():
        obtain(store, settings, [names.parse_name("warm.example.com")], keys.generate("ec256"))
        monkeypatch.setattr(time, "sleep", recording_sleep)
        obtain(store, settings, [names.parse_name("fast.example.com")], keys.generate("ec256"))
    assert all(s < 0.5 for s in slept), slept


def test_usage_errors_before_any_request(home: Path) -> None:
    from certkit.acme import obtain

    store = Store(home)
    bad_server = AcmeSettings(server="not a url", agree_tos=True)
    with pytest.raises(UsageError, match="neither a URL"):
        obtain(store, bad_server, [names.parse_name("x.example.com")], keys.generate("ec256"))
    ip_dns = AcmeSettings(server="https://127.0.0.1:1/dir", challenge="dns-01", dns_hook="true")
    with pytest.raises(UsageError, match="IP addresses"):
        obtain(store, ip_dns, [names.parse_name("192.0.2.1")], keys.generate("ec256"))
    no_hook = AcmeSettings(server="https://127.0.0.1:1/dir", challenge="dns-01")
    with pytest.raises(UsageError, match="--dns-hook"):
        obtain(store, no_hook, [names.parse_name("x.example.com")], keys.generate("ec256"))
    home.mkdir(parents=True, exist_ok=True)
    (home / "hook.sh").write_text("#!/bin/sh\n")
    (home / "hook.sh").chmod(0o644)
    for hook in ("/nonexistent/dns-hook --zone x", str(home / "hook.sh")):  # missing; not executable
        with pytest.raises(UsageError, match="is not an executable file"):
            obtain(store, AcmeSettings(server="https://127.0.0.1:1/dir", challenge="dns-01", dns_hook=hook),
                   [names.parse_name("x.example.com")], keys.generate("ec256"))
    # Half an EAB pair or an unusable --ca-bundle is bad input (exit 2), found before the network
    # (requests would report a bad bundle as a network failure).
    kid_only = AcmeSettings(server="https://127.0.0.1:1/dir", eab_kid="kid-1")
    with pytest.raises(UsageError, match="--eab-kid needs --eab-hmac-key-file"):
        obtain(store, kid_only, [names.parse_name("x.example.com")], keys.generate("ec256"))
    key_only = AcmeSettings(server="https://127.0.0.1:1/dir", eab_hmac_key_file=str(home / "eab.key"))
    with pytest.raises(UsageError, match="--eab-hmac-key-file needs --eab-kid"):
        obtain(store, key_only, [names.parse_name("x.example.com")], keys.generate("ec256"))
    home.mkdir(parents=True, exist_ok=True)
    (home / "empty.pem").write_bytes(b"")
    for bundle, message in ((home / "missing.pem", "cannot read --ca-bundle"), (home, "cannot read --ca-bundle"),
                            (home / "empty.pem", "holds no PEM certificate")):
        with pytest.raises(UsageError, match=message):
            obtain(store, AcmeSettings(server="https://127.0.0.1:1/dir", ca_bundle=str(bundle)),
                   [names.parse_name("x.example.com")], keys.generate("ec256"))


# ----- a directory in front of Pebble 2.4 (which predates ARI and profiles) -----------------------


@contextlib.contextmanager
def directory_front(pebble: PebbleServer, monkeypatch: pytest.MonkeyPatch,
                    answer: Callable[[str, dict[str, Any], int], dict[str, Any]]) -> Iterator[tuple[str, list[Any]]]:
    """Serve ``answer(path, pebble_directory, own_port)`` as JSON on a local HTTP port and record every
    JWS payload certkit POSTs. Yields (directory URL, payloads)."""
    import ssl
    import urllib.request

    from certkit.acme import net as acme_net

    with urllib.request.urlopen(pebble.directory_url,
                                context=ssl.create_default_context(cafile=str(pebble.ca_bundle))) as resp:
        directory = json.loads(resp.read())

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            data = json.dumps(answer(self.path, directory, self.server.server_address[1])).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    front = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=front.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    payloads: list[Any] = []
    real_post = acme_net.Network.post

    def spy(self: Any, url: str, obj: Any, **kw: Any) -> Any:
        payloads.append(obj.to_partial_json() if obj is not None else None)
        return real_post(self, url, obj, **kw)

    monkeypatch.setattr(acme_net.Network, "post", spy)
    try:
        yield f"http://127.0.0.1:{front.server_address[1]}/dir", payloads
    finally:
        front.shutdown()
        front.server_close()


def test_ari_window_stored_and_replaces_sent(pebble: PebbleServer, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from certkit.acme.ari import cert_id
    from certkit.issuing import issue
    from certkit.settings import LineageSettings

    asked: list[str] = []

    def answer(path: str, directory: dict[str, Any], port: int) -> dict[str, Any]:
        asked.append(path)
        if path == "/dir":
            return {**directory, "renewalInfo": f"http://127.0.0.1:{port}/ari"}
        return {"suggestedWindow": {"start": "2030-01-01T00:00:00Z", "end": "2030-01-02T00:00:00Z"}}

    with directory_front(pebble, monkeypatch, answer) as (url, payloads):
        store = Store(home)
        settings = LineageSettings(name="ari.example.com", domains=["ari.example.com"], key_type="ec256",
                                   acme=settings_for(pebble, server=url))
        issue(store, settings, echo=lambda s: None)
        state = store.load_state("ari.example.com")
        assert state["ari"]["start"] == "2030-01-01T00:00:00Z" and state["ari"]["end"] == "2030-01-02T00:00:00Z"
        first_cert = x509.load_pem_x509_certificate(store.read_version("ari.example.com", 1).cert_pem)
        assert not any(isinstance(p, dict) and "replaces" in p for p in payloads)
        issue(store, store.load_settings("ari.example.com"), echo=lambda s: None)
        orders = [p for p in payloads if isinstance(p, dict) and "identifiers" in p]
        assert orders[-1]["replaces"] == cert_id(first_cert)  # Pebble 2.4 ignores the field and issues
        assert store.live_version("ari.example.com") == 2
        assert any(p.startswith("/ari/" + cert_id(first_cert)) for p in asked)


def test_account_unknown_to_the_ca_is_registered_again(pebble: PebbleServer, home: Path) -> None:
    from certkit.acme import obtain

    store = Store(home)
    settings = settings_for(pebble, email="lost@example.com")
    with store.lock():
        obtain(store, settings, [names.parse_name("lost1.example.com")], keys.generate("ec256"))
        adir = store.account_dir(pebble.directory_url, "lost@example.com")
        info = json.loads((adir / "account.json").read_text())
        # As if the CA had been reset: the stored account URL is unknown there (another process, no cache).
        info["uri"] = info["uri"].rsplit("/", 1)[0] + "/999999"
        store.save_account(pebble.directory_url, "lost@example.com", {"account.json": json.dumps(info).encode()})
        from certkit.acme.account import forget

        forget(store, pebble.directory_url, "lost@example.com")
        result = obtain(store, settings, [names.parse_name("lost2.example.com")], keys.generate("ec256"))
    assert result.account_url and not result.account_url.endswith("/999999")
    assert json.loads((adir / "account.json").read_text())["uri"] == result.account_url


def test_profiles(pebble: PebbleServer, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    no_profiles = CliRunner().invoke(cli, ["--home", str(home), "issue", "--cn", "p.example.com",
                                           *acme_args(pebble, "--profile", "tlsserver")])
    assert no_profiles.exit_code == 2 and "offers no certificate profiles" in no_profiles.output

    profiles = {"classic": "the usual", "tlsserver": "server auth only"}

    def answer(path: str, directory: dict[str, Any], port: int) -> dict[str, Any]:
        return {**directory, "meta": {**directory["meta"], "profiles": profiles}}

    with directory_front(pebble, monkeypatch, answer) as (url, payloads):
        args = acme_args(pebble)
        args[args.index("--server") + 1] = url
        unknown = CliRunner().invoke(cli, ["--home", str(home), "issue", "--cn", "p.example.com", *args,
                                           "--profile", "shortlived"])
        assert unknown.exit_code == 2 and "classic, tlsserver" in unknown.output
        ok = issue_cli(home, "--cn", "p.example.com", *args, "--profile", "tlsserver")
        assert ok.exit_code == 0, ok.output
        orders = [p for p in payloads if isinstance(p, dict) and "identifiers" in p]
        assert orders[-1]["profile"] == "tlsserver"
        assert Store(home).load_settings("p.example.com").acme.profile == "tlsserver"  # type: ignore[union-attr]


def test_pre_and_post_hooks_run_around_each_order(pebble: PebbleServer, home: Path, tmp_path: Path) -> None:
    """certbot's --pre-hook/--post-hook: stop what holds port 80 before the order, start it after."""
    log = tmp_path / "order-hooks.log"
    pre = f"sh -c 'echo pre $CERTKIT_NAME >> {log}'"
    post = f"sh -c 'echo post $CERTKIT_NAME >> {log}'"
    result = issue_cli(home, "--cn", "hooks.example.com", *acme_args(pebble, "--pre-hook", pre, "--post-hook", post))
    assert result.exit_code == 0, result.output
    assert log.read_text().splitlines() == ["pre hooks.example.com", "post hooks.example.com"]
    acme = Store(home).load_settings("hooks.example.com").acme
    assert acme is not None and (acme.pre_hook, acme.post_hook) == (pre, post)  # renewals run them too
    failing = issue_cli(home, "--cn", "nohooks.example.com",
                        *acme_args(pebble, "--pre-hook", "sh -c 'echo port 80 busy; exit 5'"))
    assert failing.exit_code == 1 and "the pre-hook" in failing.output and "port 80 busy" in failing.output
    assert not Store(home).exists("nohooks.example.com")
    bad = CliRunner().invoke(cli, ["--home", str(home), "issue", "--cn", "x.example.com", "--pre-hook", "true"])
    assert bad.exit_code == 2 and "--pre-hook needs --acme" in bad.output
