"""A small private CA for internal mail servers (`certkit ca`): trust once, rotate leaves forever.

Capability layer: uses only the core (keys, x509, store, trust). Its roots
carry critical name constraints and path length 0, so a stolen CA key can
sign only for the permitted domains and never for another CA.

    constraints.py  --permit / --permit-ip: values, the extension, the check
    authority.py    root and leaf certificates in memory
    storage.py      cas/NAME/ in the state directory, the key file rules
    manage.py       create, rotate, retire, sign, trust, generations
    exporting.py    PEM / DER / PKCS#7 bundles and the CA listing
"""

from __future__ import annotations
