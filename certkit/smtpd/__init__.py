"""`certkit smtpd`: the reference submission server, and what other aiosmtpd applications reuse.

    server.py     the server: listeners, delivery or relay, signals, the log
    protocol.py   one client connection (aiosmtpd subclasses): caps, STARTTLS, AUTH with delays
    logtext.py    client and server text made safe for one log or reply line
    limits.py     its defences: connection caps, the failed-AUTH table, the hash pool, memory hand-back
    users.py      the users file (scrypt hashes), refused when others could have written it
    tlsreload.py  a TLS context that reloads a lineage's certificate on SIGHUP (any aiosmtpd app)

A capability: imports only the core (errors, fsguard, store, x509, atomicfile), never
certkit.check or certkit.acme. aiosmtpd is imported inside the functions that serve,
so `certkit --help` stays light.
"""
