"""Deploying a lineage's live version: targets (postfix, iis, exchange, aiosmtpd, script:),
the deploy-hook runner (hooks.py), the pipeline with verification and rollback (pipeline.py),
and the shipped PowerShell scripts (powershell/, package data).

May import the core (store, settings, runner, fsguard, clock, x509, export)
and certkit.check (to verify what a server serves after a deploy); never
certkit.issuing, certkit.renew or the commands.
"""
