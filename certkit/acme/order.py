"""One ACME order (RFC 8555 section 7.4): from new-order to a downloaded chain.

Flow: account -> new order (identifiers, ``profile``, ARI ``replaces``) ->
fetch every authorization -> publish every challenge response at once
(http-01 token, webroot file, dns-01 TXT via the hook) -> answer every
challenge -> poll the pending authorizations together with our backoff ->
finalize with the CSR -> poll the order -> download the chain (and the
alternates when a preferred chain is asked for) -> ARI window.

Nothing is written to the lineage here; the caller stores the result, so a
failure at any step leaves the lineage as it was. Published tokens and TXT
records are removed in every case.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from acme import challenges, messages
from cryptography import x509
from josepy.json_util import field as jose_field

from certkit import x509 as cx
from certkit.acme import ari, dns01, dnswait, http01
from certkit.acme.account import Account, account_for, forget, meta_of, resource
from certkit.acme.directory import AcmeResult, dry_run_server, resolve_server
from certkit.acme.net import Network, links, retry_after_of
from certkit.acme.problems import acme_error, describe_problem, problem_type, translate, validation_hint
from certkit.callbacks import Echo
from certkit.errors import AcmeError, UsageError
from certkit.keys import PrivateKey
from certkit.names import Identity
from certkit.polling import Backoff
from certkit.progress import StatusLine
from certkit.settings import AcmeSettings
from certkit.store import Store

DEFAULT_DEADLINE = 300.0


class NewOrder(messages.NewOrder):
    """newOrder payload with RFC 9773's ``replaces`` (the library's NewOrder lacks it)."""

    replaces: str | None = jose_field("replaces", omitempty=True)


def check_settings(settings: AcmeSettings, identities: Sequence[Identity]) -> None:
    """Refuse combinations that cannot work, before any request (exit 2)."""
    if settings.challenge not in ("http-01", "dns-01"):
        raise UsageError(f"unknown challenge {settings.challenge!r}", "use --challenge http-01 or dns-01")
    wildcards = [i.value for i in identities if i.is_wildcard]
    if settings.challenge == "http-01" and wildcards:
        raise UsageError(f"wildcard names ({', '.join(wildcards)}) can only be validated with dns-01",
                         "add --challenge dns-01 --dns-hook CMD (a command that publishes TXT records)")
    if settings.challenge == "dns-01":
        ips = [i.value for i in identities if i.is_ip]
        if ips:
            raise UsageError(f"IP addresses ({', '.join(ips)}) cannot be validated with dns-01",
                             "use --challenge http-01 for them")
        if not settings.dns_hook:
            raise UsageError("--challenge dns-01 needs --dns-hook CMD",
                             "pass a command that adds/removes TXT records (see docs/acme.md)")
        dns01.check_runnable(settings.dns_hook)
    # EAB comes as a pair; one half alone would be ignored (kid) or sent nowhere (key file).
    if bool(settings.eab_kid) != bool(settings.eab_hmac_key_file):
        given, missing = ("--eab-kid", "--eab-hmac-key-file") if settings.eab_kid else \
            ("--eab-hmac-key-file", "--eab-kid")
        raise UsageError(f"{given} needs {missing}", "pass both values from the CA's portal (the key in a 0600 file)")
    if settings.ca_bundle:
        _check_ca_bundle(settings.ca_bundle)
    _check_dns_wait(settings)
    if settings.challenge == "http-01" and settings.webroot:
        http01.Webroot(settings.webroot)  # checks the folder exists


def _check_dns_wait(settings: AcmeSettings) -> None:
    """--dns-resolver parses, --dns-wait has somewhere to look (exit 2 otherwise)."""
    if settings.dns_resolver:
        if settings.challenge != "dns-01":
            raise UsageError("--dns-resolver is for --challenge dns-01", "drop it, or use --challenge dns-01")
        dnswait.parse_where(settings.dns_resolver)
    if settings.dns_wait is not None:
        if not settings.dns_resolver:
            raise UsageError("--dns-wait needs --dns-resolver (where to look for the TXT records)",
                             "add --dns-resolver authoritative (the zone's own servers) or HOST[:PORT]")
        dnswait.wait_seconds(settings.dns_wait)
    elif settings.dns_resolver:
        dnswait.wait_seconds(None)  # a bad CERTKIT_DNS_WAIT is exit 2 before the CA is asked


def _check_ca_bundle(path: str) -> None:
    """--ca-bundle must be a readable PEM file: requests reports a bad one as a network failure."""
    try:
        with open(path, "rb") as stream:
            data = stream.read()
    except OSError as exc:
        raise UsageError(f"cannot read --ca-bundle {path}: {exc.strerror or exc}",
                         "pass a PEM file with the CA certificates that sign the ACME server's HTTPS") from exc
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise UsageError(f"--ca-bundle {path} holds no PEM certificate",
                         "pass a PEM file with the CA certificates that sign the ACME server's HTTPS")


@dataclass
class _Pending:
    """One authorization still to validate."""

    url: str
    identifier: str
    challenge: messages.ChallengeBody
    response: Any


@dataclass
class _Publication:
    """What was published for the challenges, to take down afterwards."""

    settings: AcmeSettings
    echo: Echo
    responder: http01.Responder | None = None
    tokens: list[str] = field(default_factory=list)
    webroot: http01.Webroot | None = None
    txt: list[dns01.TxtRecord] = field(default_factory=list)

    def cleanup(self) -> None:
        if self.responder is not None:
            for token in self.tokens:
                self.responder.remove(token)
            http01.release(self.responder)
            self.responder = None
        if self.webroot is not None:
            self.webroot.cleanup()
        if self.txt and self.settings.dns_hook:
            dns01.cleanup(self.settings.dns_hook, self.txt, self.echo)
            self.txt = []


def obtain_certificate(
    store: Store,
    settings: AcmeSettings,
    identities: Sequence[Identity],
    key: PrivateKey | None,
    *,
    csr_pem: bytes | None = None,
    previous_cert: x509.Certificate | None = None,
    echo: Echo = print,
    deadline: float | None = None,
    dry_run: bool = False,
    progress: StatusLine | None = None,
) -> AcmeResult:
    """See :func:`certkit.acme.obtain`."""
    directory_url = resolve_server(settings.server)
    if dry_run:
        directory_url = dry_run_server(directory_url)
    if not identities:
        raise UsageError("no names to order a certificate for", "pass --cn NAME")
    check_settings(settings, identities)
    # The propagation wait comes on top: a 10-minute --dns-wait must not eat the CA's time.
    wait = dnswait.wait_seconds(settings.dns_wait) if settings.dns_resolver else 0.0
    end = time.monotonic() + (deadline or DEFAULT_DEADLINE) + wait
    if csr_pem is None:
        assert key is not None
        csr_pem = cx.make_csr(key, identities)
    public_key = x509.load_pem_x509_csr(csr_pem).public_key()
    with translate(directory_url, "create the ACME account"):
        account = account_for(store, settings, directory_url, echo, persist=not dry_run)
    for attempt in (1, 2):
        try:
            return _run_order(settings, account, identities, public_key, csr_pem, previous_cert, echo, end,
                              progress)
        except AcmeError as exc:
            cause = exc.__cause__
            if attempt == 1 and isinstance(cause, messages.Error) and problem_type(cause) == "accountDoesNotExist":
                # The CA lost or deleted the account (a reset test CA, a deactivation): register the key again.
                forget(store, directory_url, settings.email)
                with translate(directory_url, "create the ACME account"):
                    account = account_for(store, settings, directory_url, echo, fresh=True, persist=not dry_run)
                continue
            raise
    raise AssertionError("unreachable")


def _run_order(settings: AcmeSettings, account: Account, identities: Sequence[Identity],
               public_key: Any, csr_pem: bytes, previous_cert: x509.Certificate | None, echo: Echo,
               end: float, progress: StatusLine | None) -> AcmeResult:
    url = account.directory_url
    net = account.network(settings.ca_bundle, echo, end)
    try:
        with translate(url, "create the order"):
            order_url, order = _new_order(net, account, settings, identities, previous_cert)
        with translate(url, "validate the names"):
            _authorize(net, account, settings, order, echo, end, progress)
        with translate(url, "issue the certificate"):
            order = _finalize(net, order_url, order, csr_pem, end)
        with translate(url, "download the certificate"):
            cert_pem, chain_pem = _download(net, order, settings.preferred_chain, echo)
    finally:
        net.close()
    leaf = cx.load_chain(cert_pem)[0]
    if cx.spki_der(leaf.public_key()) != cx.spki_der(public_key):
        raise AcmeError(f"the certificate from {url} does not match the key certkit sent",
                        "the CA misbehaved; nothing was stored - try again")
    ari_window = None
    if resource(account.directory, "renewalInfo"):
        try:
            with translate(url, "give renewal information"):
                ari_net = Network(ca_bundle=settings.ca_bundle)
                try:
                    ari_window = ari.fetch(ari_net.get, account.directory["renewalInfo"], leaf)
                finally:
                    ari_net.close()
        except (AcmeError, ValueError) as exc:
            echo(f"warning: no renewal window from the CA ({exc}); certkit uses the 1/3-lifetime rule")
    return AcmeResult(cert_pem, chain_pem, url, ari_window, account.uri)


def _new_order(net: Network, account: Account, settings: AcmeSettings, identities: Sequence[Identity],
               previous_cert: x509.Certificate | None) -> tuple[str, messages.Order]:
    directory = account.directory
    meta = meta_of(directory)
    if settings.profile:
        profiles = meta.get("profiles")
        if not isinstance(profiles, dict):
            raise UsageError(f"the CA at {account.directory_url} offers no certificate profiles",
                             "drop --profile")
        if settings.profile not in profiles:
            raise UsageError(f"the CA offers no profile {settings.profile!r}",
                             f"choose one of: {', '.join(sorted(profiles))}")
    replaces = None
    if previous_cert is not None and resource(directory, "renewalInfo"):
        with contextlib.suppress(ValueError):
            replaces = ari.cert_id(previous_cert)
    idents = [messages.Identifier(typ=messages.IDENTIFIER_IP if i.is_ip else messages.IDENTIFIER_FQDN,
                                  value=i.value) for i in identities]
    payload = NewOrder(identifiers=idents, profile=settings.profile, replaces=replaces)
    try:
        response = net.post(directory["newOrder"], payload)
    except messages.Error as exc:
        if replaces is None or problem_type(exc) in ("rateLimited", "accountDoesNotExist"):
            raise
        # RFC 9773 section 5: a CA may refuse "replaces" (already replaced, unknown certificate);
        # the order itself is still wanted, so ask again without it.
        response = net.post(directory["newOrder"], NewOrder(identifiers=idents, profile=settings.profile))
    order_url = response.headers.get("Location")
    if not order_url:
        raise AcmeError(f"the ACME server {account.directory_url} sent no order URL",
                        "the server does not follow RFC 8555 section 7.4")
    return order_url, messages.Order.from_json(response.json())


def _authorize(net: Network, account: Account, settings: AcmeSettings, order: messages.Order,
               echo: Echo, end: float, progress: StatusLine | None) -> None:
    if order.status == messages.STATUS_READY or order.status == messages.STATUS_VALID:
        return  # every authorization is still valid from an earlier order
    wanted = challenges.HTTP01 if settings.challenge == "http-01" else challenges.DNS01
    pending: list[_Pending] = []
    txt: list[dns01.TxtRecord] = []
    for authz_url in order.authorizations:
        authz = messages.Authorization.from_json(net.post_as_get(authz_url).json())
        ident = authz.identifier.value
        shown = f"*.{ident}" if authz.wildcard else ident
        if authz.status == messages.STATUS_VALID:
            continue
        if authz.status != messages.STATUS_PENDING:
            raise AcmeError(f"the authorization for {shown} is {authz.status.name}",
                            "order again; if it repeats, check the name at the CA")
        chall = next((c for c in authz.challenges if isinstance(c.chall, wanted)), None)
        if chall is None:
            offered = ", ".join(sorted({c.chall.typ for c in authz.challenges})) or "none"
            raise AcmeError(f"the CA offers no {settings.challenge} challenge for {shown} (offered: {offered})",
                            "use --challenge with one of the offered types")
        response, validation = chall.chall.response_and_validation(account.jwk)
        pending.append(_Pending(authz_url, shown, chall, response))
        if wanted is challenges.DNS01:
            txt.append(dns01.TxtRecord(ident, chall.chall.validation_domain_name(ident), validation))
    if not pending:
        return
    with _published(settings, pending, txt, account, echo, progress):
        # Every challenge is answered before the first poll: the CA validates all names in parallel.
        for item in pending:
            net.post(item.challenge.uri, item.response)
        _poll_authorizations(net, pending, end, settings.challenge)


@contextlib.contextmanager
def _published(settings: AcmeSettings, pending: list[_Pending], txt: list[dns01.TxtRecord],
               account: Account, echo: Echo, progress: StatusLine | None) -> Iterator[None]:
    pub = _Publication(settings, echo)
    try:
        if settings.challenge == "http-01":
            if settings.webroot:
                pub.webroot = http01.Webroot(settings.webroot)
            else:
                pub.responder = http01.acquire(settings.http_address or "", int(settings.http_port))
            for item in pending:
                chall = item.challenge.chall
                key_authz = chall.validation(account.jwk)
                if pub.webroot is not None:
                    pub.webroot.add(chall.encode("token"), key_authz)
                else:
                    assert pub.responder is not None
                    pub.responder.add(chall.encode("token"), key_authz)
                    pub.tokens.append(chall.encode("token"))
        else:
            assert settings.dns_hook
            pub.txt = list(txt)
            dns01.present(settings.dns_hook, txt)
            if settings.dns_resolver:
                dnswait.wait_visible(settings.dns_resolver, txt, dnswait.wait_seconds(settings.dns_wait),
                                     progress=progress, echo=echo)
        yield
    finally:
        pub.cleanup()


def _poll_authorizations(net: Network, pending: list[_Pending], end: float, challenge: str) -> None:
    backoff = Backoff(deadline=end)
    waiting = list(pending)
    failures: list[str] = []
    first_error: Any = None
    retry_after: float | None = None
    while waiting:
        if not backoff.wait(retry_after):
            names = ", ".join(p.identifier for p in waiting)
            raise AcmeError(f"the CA did not finish validating {names} in time",
                            "try again; if it repeats, check the CA's status page")
        retry_after = None
        still: list[_Pending] = []
        for item in waiting:
            response = net.post_as_get(item.url)
            authz = messages.Authorization.from_json(response.json())
            if authz.status == messages.STATUS_VALID:
                continue
            if authz.status in (messages.STATUS_PENDING, messages.STATUS_PROCESSING):
                still.append(item)
                ra = retry_after_of(response)
                retry_after = ra if retry_after is None or (ra is not None and ra < retry_after) else retry_after
                continue
            error = next((c.error for c in authz.challenges if c.error is not None), None)
            first_error = first_error or error
            detail = describe_problem(error) if error is not None else f"authorization {authz.status.name}"
            failures.append(f"  {item.identifier}: {detail}")
        waiting = still
        if failures and not waiting:
            break
    if failures:
        hint = acme_error(first_error, "validate", "", challenge).hint if first_error is not None else None
        raise AcmeError("the CA could not validate " + ("this name" if len(failures) == 1 else "these names")
                        + f" ({challenge}):\n" + "\n".join(failures) + "\n",  # the hint then gets a line of its own
                        hint or validation_hint(challenge))


def _finalize(net: Network, order_url: str, order: messages.Order, csr_pem: bytes, end: float) -> messages.Order:
    csr = x509.load_pem_x509_csr(csr_pem)
    backoff = Backoff(deadline=end)
    retry_after: float | None = None
    # The order object from new-order is stale once the authorizations are valid: fetch it at once,
    # then poll only while it is still "pending" ("ready" can lag behind the last authorization).
    first = True
    while order.status == messages.STATUS_PENDING:
        if not first and not backoff.wait(retry_after):
            raise AcmeError("the order did not become ready in time", "try again")
        first = False
        response = net.post_as_get(order_url)
        order = messages.Order.from_json(response.json())
        retry_after = retry_after_of(response)
    if order.status == messages.STATUS_READY:
        response = net.post(order.finalize, messages.CertificateRequest(csr=csr))
        order = messages.Order.from_json(response.json())
        retry_after = retry_after_of(response)
    backoff = Backoff(deadline=end)
    while order.status == messages.STATUS_PROCESSING or (
            order.status == messages.STATUS_VALID and not order.certificate):
        if not backoff.wait(retry_after):
            raise AcmeError("the CA did not issue the certificate in time", "try again")
        response = net.post_as_get(order_url)
        order = messages.Order.from_json(response.json())
        retry_after = retry_after_of(response)
    if order.status != messages.STATUS_VALID:
        if order.error is not None:
            raise acme_error(order.error, "issue the certificate", "")
        raise AcmeError(f"the order ended {order.status.name} without a certificate", "try again")
    return order


def _split(fullchain: str) -> tuple[bytes, bytes, list[x509.Certificate]]:
    certs = cx.load_chain(fullchain.encode("ascii"))
    if not certs:
        raise AcmeError("the CA sent no certificate", "try again")
    return cx.to_pem(certs[0]), b"".join(cx.to_pem(c) for c in certs[1:]), certs


def _download(net: Network, order: messages.Order, preferred: str | None, echo: Echo) -> tuple[bytes, bytes]:
    assert order.certificate
    response = net.post_as_get(order.certificate)
    cert_pem, chain_pem, certs = _split(response.text)
    if not preferred:
        return cert_pem, chain_pem
    chains = [(cert_pem, chain_pem, certs)]
    for alt_url in links(response, "alternate"):
        chains.append(_split(net.post_as_get(alt_url).text))
    for candidate in chains:
        if _chain_matches(candidate[2], preferred):
            return candidate[0], candidate[1]
    offered = ", ".join(sorted({_top_issuer(c[2]) for c in chains}))
    echo(f"warning: no chain from the CA ends at {preferred!r} (offered: {offered}); using the default chain")
    return cert_pem, chain_pem


def _top_issuer(certs: list[x509.Certificate]) -> str:
    return _cn(certs[-1].issuer)


def _cn(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else name.rfc4514_string()


def _chain_matches(certs: list[x509.Certificate], preferred: str) -> bool:
    """certbot's rule: the preferred name is the issuer CN of the chain's topmost certificate,
    or any certificate's subject CN in the chain (for cross-signed roots)."""
    wanted = preferred.strip().lower()
    if _top_issuer(certs).lower() == wanted:
        return True
    return any(_cn(c.subject).lower() == wanted for c in certs[1:])
