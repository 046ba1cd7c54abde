"""DANE for a lineage (RFC 7671, RFC 7672) and MTA-STS (RFC 8461): the records to publish, and key rollovers
that never make a key live before its TLSA record is visible.

- :mod:`certkit.dane.records`   the TLSA records of a lineage (current key, staged next key, issuing CA)
  and the staged next key itself (``lineages/NAME/dane/next-key.pem``, 0600).
- :mod:`certkit.dane.visibility` what the zone's authoritative servers serve for a TLSA name, and its TTL.
- :mod:`certkit.dane.rollover`  the renewal side: the staged key once its TLSA has been visible for
  TTL x 2 (else :class:`certkit.errors.HeldBack`), then the new next key published and stale records
  removed through the DNS hook (:mod:`certkit.dnshook`, ``CERTKIT_DNS_TYPE=TLSA``).
- :mod:`certkit.dane.mtasts`    the MTA-STS policy file, its ``_mta-sts`` TXT record and the TLS-RPT record.

Checking served chains against published records is `certkit check --dane` (certkit.check.dane); both use
the same TLSA arithmetic, :mod:`certkit.tlsa`.
"""
