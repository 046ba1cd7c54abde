"""The one boundary where acme, josepy, requests and OSError exceptions become certkit errors.

RFC 8555 section 6.7 problem documents (RFC 7807) carry a type, a detail and,
for orders with several names, per-identifier subproblems; the message shows
all of them, and the hint says what usually fixes that type.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from certkit.errors import AcmeError, CertkitError, UsageError

ACME_PREFIX = "urn:ietf:params:acme:error:"

# What usually fixes each problem type (RFC 8555 section 6.7, RFC 8739, RFC 9773).
HINTS = {
    "unauthorized": "make sure each name points at this host and the challenge is reachable from the internet "
                    "(port 80 for http-01, or use --webroot / --challenge dns-01)",
    "connection": "the CA could not connect to your server: open port 80 to the internet for http-01, "
                  "or use --challenge dns-01 with --dns-hook",
    "dns": "the CA could not resolve the name: check the domain's DNS records (A/AAAA, and TXT for dns-01)",
    "incorrectResponse": "another web server answered the challenge: use --webroot with its document root, "
                         "or stop it while certkit listens on port 80",
    "caa": "a CAA record of the domain forbids this CA: add the CA's domain to the CAA record",
    "rejectedIdentifier": "the CA will not issue for this name (policy): check the name, or use another CA",
    "rateLimited": "the CA's rate limit was hit: wait until the time it gives, and use "
                   "--server letsencrypt-staging for tests",
    "externalAccountRequired": "this CA needs external account binding: pass --eab-kid and --eab-hmac-key-file "
                               "with the values from the CA's customer portal",
    "unauthorizedAccount": "check --eab-kid and --eab-hmac-key-file",
    "userActionRequired": "visit the URL in the message (e.g. new terms of service), then run the command again",
    "badCSR": "the CA refused the CSR: try another --key type",
    "badPublicKey": "the CA refused the key type: try --key rsa2048 or ec256",
    "badRevocationReason": "",
    "accountDoesNotExist": "the stored ACME account is unknown to the CA: it will be registered again",
    "serverInternal": "the CA had an internal error: try again later",
    "orderNotReady": "",
    "malformed": "the CA did not understand the request: report this as a certkit bug with the message",
    "invalidProfile": "pick one of the profiles the CA lists in its directory, or drop --profile",
    "alreadyReplaced": "this certificate was already renewed",
    "invalidContact": "check --email: the CA accepts only a working address it can write to",
    "unsupportedContact": "check --email: give a plain e-mail address",
}

# dns-01 validations fail for other reasons than http-01 ones: the TXT record, the hook that publishes
# it, its TTL and propagation, the CA's resolvers (which see the public zone, not a local view of it).
DNS01_RECORD = ("the CA's resolvers did not see the expected TXT record at _acme-challenge.NAME: check that the "
                "--dns-hook really publishes it in the public zone (run it by hand with CERTKIT_DNS_ACTION=present), "
                "that it adds a value rather than replacing the record (a wildcard and its base name need two), "
                "and give it time to reach every name server - --dns-resolver authoritative --dns-wait 120 makes "
                "certkit wait until all of them serve it")
DNS01_HINTS = {
    "unauthorized": DNS01_RECORD,
    "incorrectResponse": DNS01_RECORD,
    "dns": "the CA's resolvers could not look up the TXT record (NXDOMAIN, SERVFAIL or a timeout): check the "
           "zone's delegation, its DNSSEC signatures and that every name server answers; a record just added may "
           "still be cached as missing (negative TTL of the zone's SOA) - wait that long and run the command again",
    "connection": "the CA's resolvers could not reach the zone's name servers: check that they answer on port 53 "
                  "(UDP and TCP) from the internet",
}
CHALLENGE_HINTS = {"dns-01": DNS01_HINTS}
VALIDATION_HINTS = {
    "http-01": "check that the names point at this server and port 80 (or --webroot) is reachable from the CA",
    "dns-01": DNS01_RECORD,
}


def validation_hint(challenge: str | None) -> str:
    """What to check when a validation with ``challenge`` failed for a reason the CA did not type."""
    return VALIDATION_HINTS.get(challenge or "", VALIDATION_HINTS["http-01"])


# Problems caused by what the user typed, not by the CA or the network: exit 2 like other bad input.
USAGE_TYPES = frozenset({"invalidContact", "unsupportedContact", "invalidProfile"})


def problem_type(error: Any) -> str:
    """The short ACME type of a problem (``rateLimited``), or its full type for non-ACME ones."""
    typ = str(getattr(error, "typ", "") or "about:blank")
    return typ[len(ACME_PREFIX):] if typ.startswith(ACME_PREFIX) else typ


def describe_problem(error: Any) -> str:
    """One readable line (plus one per subproblem) for an ``acme.messages.Error``."""
    parts = [f"{problem_type(error)}: {getattr(error, 'detail', None) or getattr(error, 'title', None) or ''}"]
    for sub in getattr(error, "subproblems", None) or ():
        ident = getattr(sub, "identifier", None)
        who = getattr(ident, "value", None) or "?"
        parts.append(f"  {who}: {problem_type(sub)}: {getattr(sub, 'detail', None) or ''}")
    return "\n".join(parts).rstrip(": ")


def acme_error(error: Any, what: str, directory_url: str, challenge: str | None = None) -> AcmeError | UsageError:
    """The error for a problem document returned while doing ``what``.

    AcmeError (exit 1), or UsageError (exit 2) for the problem types that
    blame the user's input (:data:`USAGE_TYPES`, e.g. a malformed --email).
    ``challenge`` (a validation's type) picks that challenge's hints: a failed
    dns-01 is about the TXT record, never port 80.
    """
    typ = problem_type(error)
    hints = {**HINTS, **CHALLENGE_HINTS.get(challenge or "", {})}
    hint = hints.get(typ) or "the CA's message says why" + (f"; the CA is {directory_url}" if directory_url else "")
    sub_types = {problem_type(s) for s in getattr(error, "subproblems", None) or ()}
    if not hints.get(typ) and len(sub_types) == 1:
        hint = hints.get(sub_types.pop()) or hint
    cls = UsageError if typ in USAGE_TYPES else AcmeError
    return cls(f"the ACME server refused to {what}: {describe_problem(error)}", hint)


@contextlib.contextmanager
def translate(directory_url: str, what: str = "complete the request") -> Iterator[None]:
    """Turn third-party exceptions raised inside the block into CertkitError (one boundary).

    CertkitError passes through unchanged. Problem documents become
    AcmeError with their type, detail and subproblems; network failures say
    which server could not be reached and what to check.
    """
    import josepy
    import requests
    from acme import errors as acme_errors
    from acme import messages

    try:
        yield
    except CertkitError:
        raise
    except messages.Error as exc:
        raise acme_error(exc, what, directory_url) from exc
    except requests.exceptions.SSLError as exc:
        raise AcmeError(f"cannot verify the HTTPS certificate of the ACME server {directory_url}: {_short(exc)}",
                        "check the URL, or pass --ca-bundle FILE with the CA's trust anchors "
                        "(private CAs, test servers)") from exc
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise AcmeError(f"cannot reach the ACME server {directory_url}: {_short(exc)}",
                        "check the URL, the network and any proxy, then run the command again") from exc
    except requests.exceptions.RequestException as exc:
        raise AcmeError(f"HTTP request to the ACME server {directory_url} failed: {_short(exc)}",
                        "check the URL and try again") from exc
    except acme_errors.ClientError as exc:
        raise AcmeError(f"unexpected answer from the ACME server {directory_url}: {_client_error_text(exc)}",
                        "check that --server is an ACME directory URL") from exc
    except (acme_errors.Error, josepy.errors.Error, ValueError, KeyError, TypeError) as exc:
        raise AcmeError(f"unexpected answer from the ACME server {directory_url} while trying to {what}: "
                        f"{type(exc).__name__}: {_short(exc)}",
                        "check that --server is an ACME directory URL; if it is, report this") from exc
    except OSError as exc:
        raise AcmeError(f"ACME request to {directory_url} failed: {exc.strerror or exc}",
                        "check the network and try again") from exc


def _client_error_text(exc: Exception) -> str:
    arg = exc.args[0] if exc.args else exc
    if isinstance(arg, tuple):
        arg = arg[0]
    status = getattr(arg, "status_code", None)
    if status is not None:
        return f"HTTP {status} {getattr(arg, 'reason', '')} from {getattr(arg, 'url', '')}".strip()
    return _short(exc)


def _short(exc: BaseException, limit: int = 300) -> str:
    """The reason inside a requests/urllib3 exception, in words: never a nested repr like
    ``SSLError(SSLCertVerificationError(1, '[SSL: ...``."""
    import ssl

    inner = _innermost(exc)
    if isinstance(inner, ssl.SSLCertVerificationError):
        text = f"certificate verify failed: {inner.verify_message or inner.reason or 'untrusted'}"
    elif isinstance(inner, ssl.SSLError):
        text = f"TLS error: {inner.reason or inner.strerror or type(inner).__name__}"
    elif isinstance(inner, OSError) and inner.strerror:
        text = inner.strerror
    else:
        text = str(inner) or type(inner).__name__
        # urllib3 wraps the interesting part deep inside; keep the innermost reason.
        for marker in ("Caused by ", "Failed to establish a new connection: "):
            if marker in text:
                text = text.split(marker, 1)[1]
        text = text.strip("()'\" ")
    return text[:limit]


def _innermost(exc: BaseException) -> BaseException:
    """Follow ``reason``, exception arguments and causes down to the first exception that wraps nothing."""
    seen: set[int] = set()
    current = exc
    while id(current) not in seen:
        seen.add(id(current))
        reason = getattr(current, "reason", None)
        wrapped = reason if isinstance(reason, BaseException) else next(
            (arg for arg in current.args if isinstance(arg, BaseException)), None)
        wrapped = wrapped or current.__cause__
        if wrapped is None:
            break
        current = wrapped
    return current
