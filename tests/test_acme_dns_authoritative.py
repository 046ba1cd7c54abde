"""`--dns-resolver authoritative`: the TXT record must be served by every name server of its zone.

Real Knot DNS servers (tests/servers/authdns.py: example.test on ns1 and ns2,
each with its own copy of the zone) and a real Pebble; the zone cut and the
name servers are found through ns1 used as the lookup resolver
(``authoritative@ADDRESS``), then each server is asked directly with RD=0.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from certkit.acme import dnswait
from certkit.acme.dns01 import TxtRecord
from certkit.cli import cli
from certkit.errors import AcmeError
from certkit.store import Store
from tests.servers.authdns import AuthZone
from tests.servers.pebble import PebbleServer

pytestmark = [pytest.mark.integration]

NAME = "_acme-challenge.mail.example.test"


def where(zone: AuthZone) -> str:
    return f"authoritative@{zone.servers[0]}"


def test_the_zone_and_its_name_servers_are_found(auth_zone: AuthZone) -> None:
    zone, servers = dnswait.zone_servers(dnswait.parse_where(where(auth_zone)), NAME + ".")
    assert zone == "example.test."
    assert [(s.host, s.port, s.recursive) for s in servers] == [(auth_zone.servers[0], 53, False),
                                                                (auth_zone.servers[1], 53, False)]
    assert servers[1].label == f"ns2.example.test ({auth_zone.servers[1]})"


def test_a_record_on_one_name_server_only_is_not_visible(auth_zone: AuthZone) -> None:
    record = TxtRecord("mail.example.test", NAME, "the-expected-value")
    auth_zone.set_txt(0, NAME, record.value)
    try:
        with pytest.raises(AcmeError) as failed:
            dnswait.wait_visible(where(auth_zone), [record], 0.5)
        message = failed.value.message
        assert f'{NAME} TXT "the-expected-value"' in message
        assert f"ns1.example.test ({auth_zone.servers[0]}) serves it" in message
        assert f"ns2.example.test ({auth_zone.servers[1]}) answered NXDOMAIN" in message
        auth_zone.set_txt(1, NAME, "an-old-value")
        with pytest.raises(AcmeError) as failed:
            dnswait.wait_visible(where(auth_zone), [record], 0.5)
        assert f'ns2.example.test ({auth_zone.servers[1]}) answered other values: "an-old-value"' \
            in failed.value.message
        auth_zone.set_txt(1, NAME, record.value)
        lines: list[str] = []
        dnswait.wait_visible(where(auth_zone), [record], 5, echo=lines.append)
        assert lines == ["dns-01: 1 TXT record name(s) visible at the zone's name servers after "
                         + lines[0].rsplit("after ", 1)[1]]
    finally:
        auth_zone.clear_txt(0, NAME)
        auth_zone.clear_txt(1, NAME)


def test_a_server_that_is_not_authoritative_is_named(auth_zone: AuthZone) -> None:
    """A name outside the zone the servers serve: knot refuses it, and the lookup says so."""
    record = TxtRecord("mail.other.test", "_acme-challenge.mail.other.test", "v")
    with pytest.raises(AcmeError) as failed:
        dnswait.wait_visible(where(auth_zone), [record], 0.3)
    assert "cannot find the zone of _acme-challenge.mail.other.test" in failed.value.message
    assert auth_zone.servers[0] in failed.value.message


def write_hook(tmp_path: Path, pebble: PebbleServer, zone: AuthZone, servers: tuple[int, ...]) -> tuple[str, Path]:
    """A hook that publishes at Pebble's DNS (for the CA) and on the given knot servers (0: ns1, 1: ns2)."""
    log = tmp_path / "hook.log"
    hook = tmp_path / "hook.py"
    sockets = [str(zone.sockets[i]) for i in servers]
    hook.write_text(f"""
import json, os, subprocess, urllib.request
env = os.environ
action, name, value = env["CERTKIT_DNS_ACTION"], env["CERTKIT_DNS_NAME"], env["CERTKIT_DNS_VALUE"]
with open({str(log)!r}, "a") as fh:
    fh.write(json.dumps([action, name, value]) + "\\n")
path, body = ("/set-txt", {{"host": name + ".", "value": value}}) if action == "present" else \\
    ("/clear-txt", {{"host": name + "."}})
req = urllib.request.Request({pebble.challtest_url!r} + path, data=json.dumps(body).encode(), method="POST")
urllib.request.urlopen(req).read()
for sock in {sockets!r}:
    knotc = ["knotc", "-s", sock]
    subprocess.run(knotc + ["zone-begin", "example.test"], check=True, capture_output=True)
    if action == "present":
        subprocess.run(knotc + ["zone-set", "example.test", name + ".", "60", "TXT", '"' + value + '"'],
                       check=True, capture_output=True)
    else:
        subprocess.run(knotc + ["zone-unset", "example.test", name + ".", "TXT"], capture_output=True)
    subprocess.run(knotc + ["zone-commit", "example.test"], check=True, capture_output=True)
""")
    return f"{sys.executable} {hook}", log


def acme_args(pebble: PebbleServer, *extra: str) -> list[str]:
    return ["--acme", "--server", pebble.directory_url, "--ca-bundle", str(pebble.ca_bundle), "--agree-tos", *extra]


@pytest.mark.pebble
def test_issue_waits_for_the_lagging_name_server(pebble: PebbleServer, auth_zone: AuthZone, home: Path,
                                                 tmp_path: Path) -> None:
    """The hook reaches ns1 only; ns2 catches up a second later (as a secondary would): certkit waits for it."""
    hook, log = write_hook(tmp_path, pebble, auth_zone, (0,))

    def secondary_catches_up() -> None:
        while not (log.exists() and log.read_text().endswith("\n")):  # the hook's first line, whole
            time.sleep(0.05)
        _action, name, value = json.loads(log.read_text().splitlines()[0])
        time.sleep(1.0)
        auth_zone.set_txt(1, name, value)

    thread = threading.Thread(target=secondary_catches_up, daemon=True)
    thread.start()
    try:
        result = CliRunner().invoke(cli, ["--home", str(home), "issue", "--cn", "mail.example.test",
                                          *acme_args(pebble, "--dns-hook", hook, "--dns-resolver", where(auth_zone),
                                                     "--dns-wait", "30")])
        thread.join(timeout=10)
    finally:
        auth_zone.clear_txt(0, NAME)
        auth_zone.clear_txt(1, NAME)
    assert result.exit_code == 0, result.output
    assert "dns-01: 1 TXT record name(s) visible at the zone's name servers after" in result.output
    acme = Store(home).load_settings("mail.example.test").acme
    assert acme is not None and acme.dns_resolver == where(auth_zone) and acme.dns_wait == 30


@pytest.mark.pebble
def test_issue_fails_naming_the_name_server_that_lacks_the_record(pebble: PebbleServer, auth_zone: AuthZone,
                                                                  home: Path, tmp_path: Path) -> None:
    hook, log = write_hook(tmp_path, pebble, auth_zone, (0,))
    result = CliRunner().invoke(cli, ["--home", str(home), "issue", "--cn", "mail.example.test",
                                      *acme_args(pebble, "--dns-hook", hook, "--dns-resolver", where(auth_zone),
                                                 "--dns-wait", "1")])
    assert result.exit_code == 1, result.output
    value = json.loads(log.read_text().splitlines()[0])[2]
    assert "did not appear at the zone's name servers within 1 s" in result.output
    assert f'{NAME} TXT "{value}"' in result.output
    assert f"ns2.example.test ({auth_zone.servers[1]}) answered NXDOMAIN" in result.output
    assert "port 80" not in result.output
    assert Store(home).names() == []
