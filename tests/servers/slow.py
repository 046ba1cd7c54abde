"""A hostile SMTP server process: every reply comes late, or the TLS handshake never comes.

Written without certkit code (asyncio streams only) so it is an independent
peer for `certkit check`'s deadline. Modes:

- ``--delay S``: the banner and every reply are sent S seconds late; STARTTLS
  is offered and performed (with ``--cert/--key``), replies inside TLS are
  late too.
- ``--stall-tls``: replies at once, answers STARTTLS with 220, then never
  speaks TLS (the handshake stalls until the client gives up).

Run as ``python -m tests.servers.slow --port P [--port P...]``; it prints
``ready`` once every port listens. :func:`slow_servers` starts one for a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.servers.net import free_port

ROOT = Path(__file__).resolve().parents[2]


async def _reply(writer: asyncio.StreamWriter, text: str, delay: float) -> None:
    await asyncio.sleep(delay)
    writer.write(text.encode() + b"\r\n")
    await writer.drain()


async def _dialogue(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float,
                    stall_tls: bool, tls: ssl.SSLContext | None) -> None:
    await _reply(writer, "220 slow.example.test ESMTP", delay)
    secured = False
    while line := await reader.readline():
        verb = line.decode("ascii", "replace").strip().split(" ")[0].upper()
        if verb in ("EHLO", "HELO"):
            extra = "250 AUTH PLAIN" if secured else "250 STARTTLS"
            await _reply(writer, f"250-slow.example.test\r\n250-PIPELINING\r\n{extra}", delay)
        elif verb == "STARTTLS" and not secured:
            await _reply(writer, "220 go ahead", delay)
            if stall_tls or tls is None:
                await reader.read()  # never answer the ClientHello; wait for the client to hang up
                return
            await writer.start_tls(tls)
            secured = True
        elif verb == "QUIT":
            await _reply(writer, "221 bye", delay)
            return
        elif verb in ("RSET", "NOOP"):
            await _reply(writer, "250 ok", delay)
        elif verb == "MAIL":
            await _reply(writer, "250 ok" if secured else "530 5.7.0 STARTTLS first", delay)
        else:
            await _reply(writer, "530 5.7.0 authentication required" if not secured else "550 5.7.1 no relay",
                         delay)


async def _serve(ports: list[int], delay: float, stall_tls: bool, tls: ssl.SSLContext | None) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ssl.SSLError, asyncio.IncompleteReadError):
            await _dialogue(reader, writer, delay, stall_tls, tls)
        with contextlib.suppress(OSError, ssl.SSLError):
            writer.close()

    servers = [await asyncio.start_server(handle, "127.0.0.1", port, backlog=512) for port in ports]
    print("ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, action="append", required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--stall-tls", action="store_true")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args(argv)
    tls = None
    if args.cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.cert, args.key)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.port, args.delay, args.stall_tls, tls))


@contextlib.contextmanager
def slow_servers(count: int = 1, *, delay: float = 0.0, stall_tls: bool = False,
                 cert: Path | None = None, key: Path | None = None) -> Iterator[list[int]]:
    """Start the server process on ``count`` free loopback ports; yields the ports."""
    ports = [free_port() for _ in range(count)]
    argv = [sys.executable, "-m", "tests.servers.slow", "--delay", str(delay)]
    argv += [arg for port in ports for arg in ("--port", str(port))]
    if stall_tls:
        argv.append("--stall-tls")
    if cert is not None and key is not None:
        argv += ["--cert", str(cert), "--key", str(key)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env, cwd=str(ROOT))
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the slow server did not start")
        yield ports
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
