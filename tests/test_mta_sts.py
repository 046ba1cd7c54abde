"""MTA-STS against real parts: the policy certkit writes, served over HTTPS, announced in a signed zone (Knot),
looked up through unbound, and `check --mta-sts` judging it as a sending server would."""

from __future__ import annotations

import functools
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from certkit.cli import cli
from tests.servers.dns import DnsLab
from tests.servers.plain_aiosmtpd import plain_aiosmtpd, server_tls

pytestmark = [pytest.mark.integration]
DOMAIN = "dane.test"  # the lab's signed zone: MX mx.dane.test, mta-sts.dane.test -> 127.0.0.1


def run(home: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--home", str(home), *args])


@contextmanager
def https_webroot(webroot: Path, cert: Path, key: Path) -> Iterator[int]:
    """A plain HTTPS server for ``webroot`` (Python's http.server; .txt is served as text/plain)."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(webroot))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield int(httpd.server_address[1])
    finally:
        httpd.shutdown()
        httpd.server_close()


@dataclass
class Site:
    home: Path
    cafile: Path
    webroot: Path
    port: int


@pytest.fixture(scope="module")
def site(dns_lab: DnsLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """Lineages for mta-sts.dane.test (the policy host) and mx.dane.test, a webroot, an HTTPS server, one
    CA file trusting both self-signed certificates."""
    home = tmp_path_factory.mktemp("sts") / "home"
    for name in ("mta-sts.dane.test", "mx.dane.test"):
        assert run(home, "issue", "--cn", name, "--key", "ec256").exit_code == 0
    live = home / "lineages" / "mta-sts.dane.test" / "live"
    cafile = home.parent / "trusted.pem"
    cafile.write_bytes(live.joinpath("cert.pem").read_bytes()
                       + (home / "lineages" / "mx.dane.test" / "live" / "cert.pem").read_bytes())
    webroot = home.parent / "www"
    with https_webroot(webroot.parent, live / "fullchain.pem", live / "privkey.pem") as port:
        yield Site(home, cafile, webroot, port)


def publish(lab: DnsLab, home: Path, webroot: Path, *args: str) -> dict[str, Any]:
    res = run(home, "mta-sts", DOMAIN, "--webroot", str(webroot), "--json", *args)
    assert res.exit_code == 0, res.output
    made: dict[str, Any] = json.loads(res.output)
    lab.delete(f"_mta-sts.{DOMAIN}", "TXT")
    for record in made["records"]:
        lab.add(record["name"], "TXT", f'"{record["value"]}"')
    return made


def check(site: Site, lab: DnsLab, mx_port: int, *extra: str) -> tuple[int, dict[str, dict[str, str]]]:
    url = f"https://mta-sts.{DOMAIN}:{site.port}/www/.well-known/mta-sts.txt"
    res = run(site.home, "check", "--mta-sts", DOMAIN, f"smtp://127.0.0.1:{mx_port}",
              "--name", "mx.dane.test", "--resolver", lab.resolver, "--cafile", str(site.cafile),
              "--policy-url", url, "--json", *extra)
    report = json.loads(res.stdout)
    return res.exit_code, {c["id"]: c for c in report["checks"]}


@contextmanager
def mx_server(home: Path) -> Iterator[int]:
    live = home / "lineages" / "mx.dane.test" / "live"
    with plain_aiosmtpd(server_tls(live / "fullchain.pem", live / "privkey.pem")) as port:
        yield port


def test_policy_id_changes_only_with_the_policy(site: Site) -> None:
    home, webroot = site.home, site.webroot
    first = json.loads(run(home, "mta-sts", DOMAIN, "--mx", "mx.dane.test", "--json").output)
    again = json.loads(run(home, "mta-sts", DOMAIN, "--mx", "mx.dane.test", "--json").output)
    other = json.loads(run(home, "mta-sts", DOMAIN, "--mx", "mx.dane.test", "--mode", "enforce",
                           "--json").output)
    assert first["id"] == again["id"] != other["id"]
    assert first["records"][1] == {"name": f"_smtp._tls.{DOMAIN}", "type": "TXT",
                                   "value": f"v=TLSRPTv1; rua=mailto:tlsrpt@{DOMAIN}"}
    res = run(home, "mta-sts", DOMAIN, "--mx", "mx.dane.test", "--webroot", str(webroot))
    assert res.exit_code == 0 and "certkit issue --cn mta-sts.dane.test" in res.output
    assert (webroot / ".well-known" / "mta-sts.txt").read_bytes().startswith(b"version: STSv1\r\nmode: testing\r\n")


def test_enforced_policy_passes_and_mx_is_checked(site: Site, dns_lab: DnsLab) -> None:
    home, webroot = site.home, site.webroot
    made = publish(dns_lab, home, webroot, "--mx", "mx.dane.test", "--mode", "enforce",
                   "--rua", "mailto:reports@dane.test")
    with mx_server(home) as port:
        code, checks = check(site, dns_lab, port)
    assert code == 0, checks
    assert checks["mta-sts-policy"]["status"] == "PASS" and f"id={made['id']}" in checks["mta-sts-policy"]["detail"]
    assert checks["mta-sts-mx"]["status"] == "PASS"

    publish(dns_lab, home, webroot, "--mx", "other.dane.test", "--mode", "enforce")
    with mx_server(home) as port:
        code, checks = check(site, dns_lab, port)
    assert code == 1 and checks["mta-sts-mx"]["status"] == "FAIL"
    assert "not covered" in checks["mta-sts-mx"]["detail"]


def test_broken_policy_and_untrusted_https_fail(site: Site, dns_lab: DnsLab, tmp_path: Path) -> None:
    home, webroot = site.home, site.webroot
    publish(dns_lab, home, webroot, "--mx", "mx.dane.test", "--mode", "enforce")
    policy = webroot / ".well-known" / "mta-sts.txt"
    policy.write_text(policy.read_text().replace("mode: enforce", "mode: strict"))
    with mx_server(home) as port:
        code, checks = check(site, dns_lab, port)
        assert code == 1 and checks["mta-sts-policy"]["status"] == "FAIL"
        assert "mode 'strict'" in checks["mta-sts-policy"]["detail"]
        other_ca = tmp_path / "other.pem"
        other_ca.write_bytes((home / "lineages" / "mx.dane.test" / "live" / "cert.pem").read_bytes())
        site_other = Site(site.home, other_ca, site.webroot, site.port)
        code, checks = check(site_other, dns_lab, port)
    assert code == 1 and "validated HTTPS" in checks["mta-sts-policy"]["detail"]
