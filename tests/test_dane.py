"""DANE against real DNSSEC: Knot signs the zone, unbound validates, certkit publishes through its DNS hook.

What is proven here (tests/servers/dns.py has the lab):
- the records `certkit dane` prints are the ones the hook published, and they validate (AD bit);
- a renewal with the staged key keeps `check --dane` passing through the whole rollover
  (current + next published, switch, stale record removed);
- a renewal whose next key's TLSA is not visible is held back (exit 1, nothing changes),
  and goes through once the record is published;
- a wrong hash is a FAIL and an unsigned answer a WARN.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from certkit.cli import cli
from tests.servers.dns import DnsLab
from tests.servers.net import free_port
from tests.servers.pebble import PebbleServer
from tests.servers.plain_aiosmtpd import plain_aiosmtpd, server_tls

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def run(home: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--home", str(home), *args])


def issue_dane(home: Path, lab: DnsLab, host: str, port: int, *extra: str) -> None:
    res = run(home, "issue", "--cn", host, "--key", "ec256", "--dane", "--dane-port", str(port),
              "--dane-nameserver", lab.nameserver, *extra)
    assert res.exit_code == 0, res.output


def tlsa_texts(home: Path, lineage: str) -> dict[str, str]:
    res = run(home, "dane", lineage, "--json")
    assert res.exit_code == 0, res.output
    return {r["role"]: r["text"] for r in json.loads(res.output)["records"]}


@contextmanager
def serving(home: Path, lineage: str, port: int, version: int | None = None) -> Iterator[int]:
    """An SMTP server (STARTTLS) on ``port`` with the lineage's live certificate (or ``version``'s)."""
    folder = home / "lineages" / lineage / ("live" if version is None else f"versions/{version:04d}")
    with plain_aiosmtpd(server_tls(folder / "fullchain.pem", folder / "privkey.pem"), port=port) as bound:
        yield bound


def dane_check(home: Path, lab: DnsLab, host: str, port: int, lineage: str, *extra: str) -> tuple[int, dict[str, str]]:
    res = run(home, "check", f"smtp://127.0.0.1:{port}", "--name", host, "--expect", lineage, "--quick", "--dane",
              "--resolver", lab.resolver, "--json", *extra)
    report = json.loads(res.stdout)
    found = next(c for c in report["checks"] if c["id"] == "dane-tlsa")
    return res.exit_code, found


def resolved(lab: DnsLab, owner: str) -> tuple[bool, set[str]]:
    """(AD bit, TLSA texts) as the validating resolver answers."""
    import dns.flags
    import dns.message
    import dns.query

    query = dns.message.make_query(owner + ".", "TLSA", want_dnssec=True)
    answer = dns.query.udp(query, "127.0.0.1", port=lab.resolver_port, timeout=5)
    texts = {f"{r.usage} {r.selector} {r.mtype} {r.cert.hex()}" for rrset in answer.answer
             if rrset.rdtype == 52 for r in rrset}
    return bool(answer.flags & dns.flags.AD), texts


def test_printed_records_are_published_and_validate(dns_lab: DnsLab, home: Path) -> None:
    port = free_port()
    issue_dane(home, dns_lab, "mx.dane.test", port, "--dns-hook", str(dns_lab.hook))
    printed = tlsa_texts(home, "mx.dane.test")
    assert set(printed) == {"current", "next"} and printed["current"] != printed["next"]
    secure, served = resolved(dns_lab, f"_{port}._tcp.mx.dane.test")
    assert secure, "the validating resolver did not set AD on the published TLSA records"
    assert served == set(printed.values())
    hook_calls = dns_lab.hook_log.read_text().splitlines()
    assert f"present TLSA _{port}._tcp.mx.dane.test {printed['next']}" in hook_calls
    key = home / "lineages" / "mx.dane.test" / "dane" / "next-key.pem"
    assert key.stat().st_mode & 0o777 == 0o600
    shown = json.loads(run(home, "show", "mx.dane.test", "--json").output)["dane"]
    assert sorted(shown.pop("published")) == sorted(printed.values())
    assert shown == {"name": f"_{port}._tcp.mx.dane.test", "port": port, "dns_hook": str(dns_lab.hook),
                     "next_key_staged": True}
    zone = run(home, "dane", "mx.dane.test").output
    assert f"_{port}._tcp.mx.dane.test. 3600 IN TLSA {printed['current']} ; current" in zone


def test_rollover_keeps_dane_check_passing(dns_lab: DnsLab, home: Path, tmp_path: Path) -> None:
    port, host, name = free_port(), "roll.dane.test", "roll.dane.test"
    owner = f"_{port}._tcp.{host}"
    # A deploy target: certkit then knows when the server switched, and removes the old record right after.
    reload = tmp_path / "reload.sh"
    reload.write_text("#!/bin/sh\nexit 0\n")
    reload.chmod(0o755)
    issue_dane(home, dns_lab, host, port, "--dns-hook", str(dns_lab.hook), "--deploy", f"script:{reload}")
    before = tlsa_texts(home, name)
    with serving(home, name, port):
        code, found = dane_check(home, dns_lab, host, port, name)
    assert (code, found["status"]) == (0, "PASS"), found
    assert "DANE-EE" in found["detail"] and "AD bit" in found["detail"]

    res = run(home, "renew", "--force", name)
    assert res.exit_code == 0, res.output
    after = tlsa_texts(home, name)
    assert after["current"] == before["next"], "the renewal did not use the staged key"
    assert after["next"] not in before.values()
    # Published: the new current and the new next; the old current was removed after the switch.
    assert resolved(dns_lab, owner) == (True, {after["current"], after["next"]})
    assert f"cleanup TLSA {owner} {before['current']}" in dns_lab.hook_log.read_text()
    with serving(home, name, port):
        code, found = dane_check(home, dns_lab, host, port, name)
    assert (code, found["status"]) == (0, "PASS"), found
    # The same verdict from certkit's own validation against the zone's KSK.
    with serving(home, name, port):
        code, found = dane_check(home, dns_lab, host, port, name, "--dnssec-anchor", str(dns_lab.anchor))
    assert (code, found["status"]) == (0, "PASS"), found
    assert "validated against" in found["detail"]
    # ... also from the parent zone's key, through dane.test's DS record in test.
    with serving(home, name, port):
        code, found = dane_check(home, dns_lab, host, port, name, "--dnssec-anchor", str(dns_lab.parent_anchor))
        assert (code, found["status"]) == (0, "PASS"), found
        # An anchor that is not the zone's key: nothing validates (bogus), FAIL.
        wrong = dns_lab.workdir / "wrong-anchor.keys"
        wrong.write_text(dns_lab.anchor.read_text().replace("dane.test.", "test.", 1))
        code, found = dane_check(home, dns_lab, host, port, name, "--dnssec-anchor", str(wrong))
    assert (code, found["status"]) == (1, "FAIL"), found
    assert "DNSSEC validation failed" in found["detail"] and "trust anchor" in found["detail"]
    # The old key no longer matches anything published: a server still on version 1 fails DANE.
    with serving(home, name, port, version=1):
        code, found = dane_check(home, dns_lab, host, port, "roll.dane.test")
    assert found["status"] == "FAIL" and code == 1


def test_renewal_waits_until_the_next_tlsa_is_visible(dns_lab: DnsLab, home: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    port, host = free_port(), "held.dane.test"
    owner = f"_{port}._tcp.{host}"
    issue_dane(home, dns_lab, host, port)  # no --dns-hook: records are published by hand
    records = tlsa_texts(home, host)
    dns_lab.add(owner, "TLSA", records["current"])

    res = run(home, "renew", "--force", host)
    assert res.exit_code == 1
    assert "HELD BACK" in res.output and records["next"] in res.output
    assert tlsa_texts(home, host) == records, "a held-back renewal changed the lineage"
    assert sorted(p.name for p in (home / "lineages" / host / "versions").iterdir()) == ["0001"]

    res = run(home, "renew", "--force", "--json", host)
    assert res.exit_code == 1
    assert json.loads(res.stdout)["held_back"][0]["name"] == host

    # Visible now, with a TTL of 30 s: a minute must pass first, longer than this run may wait.
    monkeypatch.setenv("CERTKIT_DANE_WAIT_MAX", "5")
    dns_lab.update("dane.test", f"update add {owner}. 30 TLSA {records['next']}")
    res = run(home, "renew", "--force", host)
    assert res.exit_code == 1, res.output
    assert "has been visible since" in res.output and "TTL 30 s" in res.output
    assert tlsa_texts(home, host) == records

    # Gone again and back with a TTL of 1 s: the wait starts over, 2 s, which this run may wait.
    dns_lab.delete(owner, "TLSA", records["next"])
    assert "HELD BACK" in run(home, "renew", "--force", host).output
    dns_lab.add(owner, "TLSA", records["next"])
    res = run(home, "renew", "--force", host)
    assert res.exit_code == 0, res.output
    assert "waiting" in res.output
    assert tlsa_texts(home, host)["current"] == records["next"]
    # Published by hand, and certkit deployed nothing: it says what to remove, and when.
    assert ("remove by hand, once your server serves the new certificate: "
            f"{owner}. IN TLSA {records['current']}") in res.output


def test_skip_dane_wait_warns_and_switches(dns_lab: DnsLab, home: Path) -> None:
    port, host = free_port(), "skip.dane.test"
    issue_dane(home, dns_lab, host, port)
    records = tlsa_texts(home, host)
    res = run(home, "renew", "--force", "--skip-dane-wait", host)
    assert res.exit_code == 0, res.output
    assert "WARNING: --skip-dane-wait" in res.output
    assert tlsa_texts(home, host)["current"] == records["next"]


def test_wrong_hash_fails_and_unsigned_answer_warns(dns_lab: DnsLab, home: Path) -> None:
    port = free_port()
    issue_dane(home, dns_lab, "bad.dane.test", port)
    good = tlsa_texts(home, "bad.dane.test")["current"]
    wrong = good[:-6] + ("000000" if not good.endswith("000000") else "111111")
    dns_lab.add(f"_{port}._tcp.bad.dane.test", "TLSA", wrong)
    with serving(home, "bad.dane.test", port):
        code, found = dane_check(home, dns_lab, "bad.dane.test", port, "bad.dane.test")
    assert (code, found["status"]) == (1, "FAIL"), found
    assert "no TLSA record" in found["detail"] and "fix" in found

    # The right record in a zone nothing anchors: no AD bit, so DANE clients would ignore it.
    issue_dane(home, dns_lab, "mx.plain.test", port)
    dns_lab.add(f"_{port}._tcp.mx.plain.test", "TLSA", tlsa_texts(home, "mx.plain.test")["current"])
    with serving(home, "mx.plain.test", port):
        code, found = dane_check(home, dns_lab, "mx.plain.test", port, "mx.plain.test")
        assert (code, found["status"]) == (0, "WARN"), found
        assert "not DNSSEC-secure" in found["detail"] and "1 of 1 match" in found["detail"]
        code, found = dane_check(home, dns_lab, "mx.plain.test", port, "mx.plain.test",
                                 "--dnssec-anchor", str(dns_lab.anchor))
        assert found["status"] == "WARN" and "no RRSIG" in found["detail"], found


@pytest.mark.pebble
def test_acme_lineage_rolls_over_with_its_staged_key(dns_lab: DnsLab, home: Path, pebble: PebbleServer,
                                                     tmp_path: Path) -> None:
    port, host = free_port(), "acme.dane.test"
    owner = f"_{port}._tcp.{host}"
    issue_dane(home, dns_lab, host, port, "--dns-hook", str(dns_lab.hook), "--dane-ca", "--acme", "--server",
               pebble.directory_url, "--ca-bundle", str(pebble.ca_bundle), "--http-port", str(pebble.http_port),
               "--http-address", "127.0.0.1", "--challenge", "http-01", "--agree-tos")
    before = tlsa_texts(home, host)
    assert set(before) == {"current", "next", "ca"} and before["ca"].startswith("2 1 1 ")
    assert resolved(dns_lab, owner) == (True, set(before.values()))
    res = run(home, "renew", "--force", host)
    assert res.exit_code == 0, res.output
    after = tlsa_texts(home, host)
    # The CA's certificate issued the new version with the staged key; its 2 1 1 record stays.
    assert after["current"] == before["next"] and after["ca"] == before["ca"]
    # No deploy target: the previous key's record stays until the next renewal.
    assert resolved(dns_lab, owner) == (True, {after["current"], after["next"], after["ca"], before["current"]})
    root = tmp_path / "pebble-root.pem"
    root.write_bytes(pebble.roots_pem(0))
    with serving(home, host, port):
        code, found = dane_check(home, dns_lab, host, port, host, "--cafile", str(root))
    assert (code, found["status"]) == (0, "PASS"), found
    assert "DANE-EE" in found["detail"] and "4 record(s)" in found["detail"]


def test_key_type_change_stages_a_key_of_the_new_type_first(dns_lab: DnsLab, home: Path) -> None:
    port, host = free_port(), "expand.dane.test"
    owner = f"_{port}._tcp.{host}"
    issue_dane(home, dns_lab, host, port)
    for text in tlsa_texts(home, host).values():
        dns_lab.add(owner, "TLSA", text)
    res = run(home, "issue", "--cn", host, "--key", "ec384", "--expand")
    assert res.exit_code == 1 and "key type changed to ec384" in res.output, res.output
    staged = tlsa_texts(home, host)["next"]
    dns_lab.add(owner, "TLSA", staged)
    res = run(home, "renew", "--force", host)  # the remembered settings now say ec384
    assert res.exit_code == 0, res.output
    assert tlsa_texts(home, host)["current"] == staged
    assert json.loads(run(home, "show", host, "--json").output)["key_type"] == "ec384"
