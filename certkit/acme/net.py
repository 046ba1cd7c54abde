"""JWS requests to the ACME server, with our own retries.

:class:`Network` is the ``acme`` library's ``ClientNetwork`` (JWS signing,
nonce bookkeeping, problem parsing) with three changes:

- a ``badNonce`` answer is retried up to :data:`MAX_BAD_NONCE` times, taking
  the fresh nonce from the error response itself (RFC 8555 section 6.5:
  "the server MUST include a Replay-Nonce header field" in error responses
  too); the library retries once, which fails a quarter of the requests
  when a CA rejects half of all nonces (Pebble ``PEBBLE_WFE_NONCEREJECT=50``);
- 429 and 503 answers carrying Retry-After are waited out (capped and
  reported), a few times, within the order's deadline;
- the last response is kept, so callers can read Retry-After and Link headers.

One Network serves one order in one thread; nothing in it is shared.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import requests
from acme import client as acme_client
from acme import messages
from josepy.jwa import ES256, JWASignature
from josepy.jwk import JWK

from certkit import __version__, journal
from certkit.polling import parse_retry_after

_log = journal.logger()

MAX_BAD_NONCE = 12
MAX_RATE_WAITS = 3
MAX_RATE_WAIT = 60.0
REQUEST_TIMEOUT = 30
PEM_CHAIN = "application/pem-certificate-chain"


class Network(acme_client.ClientNetwork):
    """A ClientNetwork with certkit's retries (see the module docstring)."""

    def __init__(
        self,
        key: JWK | None = None,
        *,
        alg: JWASignature = ES256,
        account_uri: str | None = None,
        ca_bundle: str | None = None,
        new_nonce_url: str | None = None,
        timeout: int = REQUEST_TIMEOUT,
        echo: Callable[[str], None] = print,
        deadline: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(key=key, alg=alg, verify_ssl=True, user_agent=f"certkit/{__version__} acme-python",
                         timeout=timeout)
        # requests takes a CA file path for ``verify``; the library passes verify_ssl through as is.
        self.verify_ssl = ca_bundle or True  # type: ignore[assignment]
        if account_uri:
            self.account = messages.RegistrationResource(uri=account_uri, body=messages.Registration())
        self.new_nonce_url = new_nonce_url
        self.echo = echo
        self.deadline = deadline
        self.sleep = sleep  # injected by tests, which record the wait instead of timing it
        self.last_response: requests.Response | None = None

    def _send_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        started = time.monotonic()
        try:
            response = super()._send_request(method, url, *args, **kwargs)
        except Exception as exc:
            _log.debug("ACME %s %s: %s", method, url, type(exc).__name__)
            raise
        # URL and status only: request bodies are signed JWS, answers may carry the certificate.
        _log.debug("ACME %s %s -> %d in %.3f s", method, url, response.status_code, time.monotonic() - started)
        self.last_response = response
        return response

    def post(self, url: str, obj: Any, **kwargs: Any) -> requests.Response:
        """POST ``obj`` (None: POST-as-GET) as JWS, retrying badNonce and Retry-After answers."""
        bad_nonces = rate_waits = 0
        while True:
            attempt = dict(kwargs)
            attempt.setdefault("new_nonce_url", self.new_nonce_url)
            try:
                return self._post_once(url, obj, **attempt)
            except messages.Error as error:
                response = self.last_response
                if response is not None:
                    # The error answer carries a fresh nonce: use it instead of a HEAD newNonce round trip.
                    with contextlib.suppress(Exception):
                        self._add_nonce(response)
                if error.code == "badNonce" and bad_nonces < MAX_BAD_NONCE:
                    bad_nonces += 1
                    continue
                if response is not None and response.status_code in (429, 503) and rate_waits < MAX_RATE_WAITS:
                    wait = parse_retry_after(response.headers.get("Retry-After"))
                    if wait is not None and wait <= MAX_RATE_WAIT and self._time_left() > wait:
                        self.echo(f"the ACME server answered {response.status_code} ({error.code or 'busy'}) "
                                  f"and asked to retry after {wait:.0f} s; waiting")
                        self.sleep(wait)
                        rate_waits += 1
                        continue
                raise

    def post_as_get(self, url: str, **kwargs: Any) -> requests.Response:
        """POST-as-GET (RFC 8555 section 6.3)."""
        return self.post(url, None, **kwargs)

    def _time_left(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()

    def close(self) -> None:
        """Close the HTTP session (its keep-alive connection)."""
        with contextlib.suppress(Exception):
            self.session.close()


def retry_after_of(response: requests.Response | None) -> float | None:
    """Seconds from the response's Retry-After header, if any."""
    if response is None:
        return None
    return parse_retry_after(response.headers.get("Retry-After"))


def links(response: requests.Response, relation: str) -> list[str]:
    """Every Link header URL with ``rel=relation`` (RFC 8288), e.g. the "alternate" chains.

    A CA sends one Link header per alternate chain; ``response.links`` keeps
    only one per relation, so the raw header values are parsed here.
    """
    raw = getattr(response.raw, "headers", None)
    values = raw.getlist("Link") if raw is not None and hasattr(raw, "getlist") else [response.headers.get("Link", "")]
    found: list[str] = []
    for value in values:
        for item in value.split(","):
            target, _, params = item.partition(";")
            rels = " ".join(p.split("=", 1)[1].strip().strip('"') for p in params.split(";") if "=" in p
                            and p.split("=", 1)[0].strip().lower() == "rel")
            if relation in rels.split() and target.strip().startswith("<"):
                found.append(target.strip()[1:-1])
    return found
