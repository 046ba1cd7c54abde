"""certkit: certificates for SMTP submission (587 + AUTH + STARTTLS), issued, deployed, checked, renewed."""

__version__ = "0.1.0"
