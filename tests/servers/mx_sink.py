"""A receiving MX for delivery tests: aiosmtpd with STARTTLS, every message written to a folder.

Run as a program so it can start inside a network namespace
(``ip netns exec NAME python -m tests.servers.mx_sink CERT KEY PORT DIR``);
it prints ``ready`` once listening and stops on SIGTERM.
"""

from __future__ import annotations

import signal
import ssl
import sys
import threading
import uuid
from pathlib import Path
from typing import Any


def main(argv: list[str]) -> None:
    from aiosmtpd.controller import Controller

    cert, key, port, folder = argv[0], argv[1], int(argv[2]), Path(argv[3])
    folder.mkdir(parents=True, exist_ok=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            (folder / f"{uuid.uuid4().hex}.eml").write_bytes(envelope.original_content or b"")
            return "250 2.0.0 stored"

    controller = Controller(Handler(), hostname="127.0.0.1", port=port, tls_context=ctx, require_starttls=True,
                            server_hostname="mx.dane.test", ready_timeout=10)
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
