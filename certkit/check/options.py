"""How one audit runs: :class:`CheckOptions`, what to check and how.

The options carry what the user asked for (names, trust anchors, pin,
credentials, test message, timeouts, deadline, connection cap) and build,
once per run, what the checks share: the strict verifying SSL context, the
trust anchors' subjects for chain-complete, the EHLO name and a fresh
:class:`~certkit.check.target_budget.Budget` for each target.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from certkit.check import chain as chain_check
from certkit.check.dane import DaneOptions
from certkit.check.suites import BROAD_CIPHERS
from certkit.check.target_budget import Budget

DEADLINE_FACTOR = 3  # default --deadline: this many --timeout periods for the whole target


@dataclass
class CheckOptions:
    """What to check and how.

    Attributes:
        name: expected host name (default: the URL host).
        cafile: trust anchors file instead of the system store.
        expected_pem: the pinned certificate (PEM, leaf first): trust anchor and equality check.
        expected_sha256: a SHA-256 fingerprint (lower hex) the served certificate must have; unlike
            ``expected_pem`` it is no trust anchor (trust comes from ``cafile`` or the system store).
        auth_user / password: credentials for the AUTH check (password never shown).
        send_test, mail_from, rcpt_to: send one test message.
        timeout: seconds for each step.
        strict: RSA 2048 becomes a WARN.
        quick: only the main session up to EHLO after TLS (deploy verification, fleet sweeps);
            AUTH and --send-test still run when asked for.
        insecure_auth: send credentials and the test message even over a connection whose
            certificate failed a CERT_GATE check (reported as a WARN).
        helo: the EHLO name certkit uses.
        parallel_probes: run side probes in threads (off in fleet workers).
        deadline: seconds for the whole target, probes included (None: DEADLINE_FACTOR x timeout).
        max_connections: connections open to the target at the same time, at most.
        now: the clock (tests).
        client_cert / client_key: a client certificate (and its key file) presented when the server asks.
        dane: also check the TLSA records of the endpoint (``--dane``; check id dane-tlsa).
    """

    name: str | None = None
    cafile: str | None = None
    expected_pem: bytes | None = None
    expected_sha256: str | None = None
    auth_user: str | None = None
    password: str | None = None
    send_test: bool = False
    mail_from: str | None = None
    rcpt_to: str | None = None
    timeout: float = 10.0
    strict: bool = False
    quick: bool = False
    insecure_auth: bool = False
    helo: str = ""
    parallel_probes: bool = True
    deadline: float | None = None
    max_connections: int = 2
    now: Callable[[], dt.datetime] | None = None
    client_cert: str | None = None
    client_key: str | None = None
    dane: DaneOptions | None = None
    _ctx: ssl.SSLContext | None = field(default=None, repr=False)
    _anchors: frozenset[str] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def helo_name(self) -> str:
        if not self.helo:
            host = socket.gethostname()
            self.helo = host if "." in host else "certkit-check.localdomain"
        return self.helo

    def expected_der(self) -> bytes | None:
        """DER of the pinned leaf (the first certificate of ``expected_pem``)."""
        if not self.expected_pem:
            return None
        first = self.expected_pem.decode("ascii", "replace").split("-----END CERTIFICATE-----")[0]
        first = first[first.find("-----BEGIN CERTIFICATE-----"):]
        return ssl.PEM_cert_to_DER_cert(first.strip() + "\n-----END CERTIFICATE-----\n")

    def client_pair(self) -> tuple[str, str] | None:
        """(certificate file, key file) to present, or None; the key may sit in the certificate file."""
        if not self.client_cert:
            return None
        return self.client_cert, self.client_key or self.client_cert

    def anchor_names(self) -> frozenset[str]:
        """Subjects of the trust anchors chain-complete accepts: --cafile, else the system store. Read once."""
        with self._lock:
            if self._anchors is None:
                if self.cafile:
                    with open(self.cafile, encoding="ascii", errors="replace") as handle:
                        ders = chain_check.pem_certificates(handle.read())
                else:
                    ders = chain_check.system_anchor_ders()
                self._anchors = chain_check.anchor_subjects(ders)
            return self._anchors

    def trust_label(self) -> str:
        if self.cafile:
            return f"--cafile {self.cafile}"
        if self.expected_pem:
            return "the pinned certificate"
        return "the system trust store"

    def new_budget(self) -> Budget:
        """A fresh deadline and connection budget for one target, its watchdog armed."""
        seconds = self.deadline if self.deadline is not None else DEADLINE_FACTOR * self.timeout
        budget = Budget(seconds, self.max_connections)
        budget.start()
        return budget

    def broad_verify_context(self) -> ssl.SSLContext:
        """The strict context's trust and checks, every TLS 1.2 suite offered (issue 11.5; rare: not cached)."""
        ctx = replace(self, _ctx=None).verify_context()
        ctx.set_ciphers(BROAD_CIPHERS)
        return ctx

    def verify_context(self) -> ssl.SSLContext:
        """The strict context: chain verification (names are matched by certkit, SAN only). Built once."""
        with self._lock:
            if self._ctx is None:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # TLS >= 1.2, CERT_REQUIRED
                ctx.check_hostname = False  # certinfo.name_matches: SAN only, never the CN
                if self.cafile:
                    ctx.load_verify_locations(cafile=self.cafile)
                elif self.expected_pem:
                    ctx.load_verify_locations(cadata=self.expected_pem.decode("ascii", "replace"))
                    # The pinned leaf itself is the trust anchor, CA-issued or self-signed.
                    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
                else:
                    ctx.load_default_certs()
                if self.client_cert:
                    ctx.load_cert_chain(*(self.client_pair() or ()))
                self._ctx = ctx
            return self._ctx


__all__ = ["DEADLINE_FACTOR", "CheckOptions"]
