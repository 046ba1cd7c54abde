"""dns-01 (RFC 8555 section 8.4) through the user's hook (waiting for the records: dnswait.py).

The hook protocol itself (environment, ordering, cleanup) is
:mod:`certkit.dnshook`, shared with DANE's TLSA records; here the records
are TXT records named ``_acme-challenge.<domain>``. Cleanup always runs,
and its failures are reported, not fatal.
"""

from __future__ import annotations

from certkit import dnshook

# A TXT record for one authorization: the hook protocol's record (type TXT, the default).
TxtRecord = dnshook.DnsRecord
check_runnable = dnshook.check_runnable
present = dnshook.present
cleanup = dnshook.cleanup
