"""Renewal: when a lineage is due (due.py, pure), the renewal run (run.py), the CA's renewal
windows (ari.py), what concurrent renewals share (resources.py), timers (timer.py).

Owns the decision to renew and the systemd/cron/Windows timer files.
May import the core (store, settings, clock, x509...), certkit.issuing
(the pipeline it re-runs) and certkit.deploy (to finish an interrupted
deploy); nothing in certkit imports it except the `renew` and `timer`
commands.
"""
