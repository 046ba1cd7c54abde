"""Many SMTP submission endpoints in one asyncio process, for the fleet benchmark.

Usage: python fleet_server.py CERT KEY N PORTFILE
Listens on N loopback ports (port 0 each), writes them to PORTFILE (one a
line) and serves until killed: 220 banner, EHLO (STARTTLS before TLS, AUTH
after), STARTTLS, and refusals for AUTH/MAIL before TLS and relay without
AUTH - a well-behaved submission server, minus mail delivery.
"""

from __future__ import annotations

import asyncio
import resource
import ssl
import sys
from pathlib import Path


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ctx: ssl.SSLContext) -> None:
    tls = False
    try:
        writer.write(b"220 fleet.example.test ESMTP\r\n")
        while True:
            line = await asyncio.wait_for(reader.readline(), 30)
            if not line:
                return
            verb = line.split(b" ", 1)[0].strip().upper()
            if verb == b"EHLO":
                ext = b"250-AUTH PLAIN\r\n" if tls else b"250-STARTTLS\r\n"
                writer.write(b"250-fleet.example.test\r\n250-PIPELINING\r\n" + ext + b"250 8BITMIME\r\n")
            elif verb == b"STARTTLS" and not tls:
                writer.write(b"220 2.0.0 Ready to start TLS\r\n")
                await writer.drain()
                # CVE-2011-0411: bytes that arrived with STARTTLS must not be read as if sent over TLS.
                reader._buffer.clear()  # type: ignore[attr-defined]  # no public API for it
                await writer.start_tls(ctx)
                tls = True
            elif verb == b"AUTH":
                writer.write(b"535 5.7.8 authentication failed\r\n" if tls else b"538 5.7.11 Encryption required\r\n")
            elif verb == b"MAIL":
                writer.write(b"530 5.7.0 Authentication required\r\n" if tls else b"530 5.7.0 Must issue STARTTLS\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 2.0.0 Bye\r\n")
                await writer.drain()
                return
            elif verb in (b"RSET", b"NOOP"):
                writer.write(b"250 2.0.0 Ok\r\n")
            else:
                writer.write(b"502 5.5.2 Error: command not recognized\r\n")
            await writer.drain()
    except (OSError, ssl.SSLError, asyncio.TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(cert: str, key: str, count: int, portfile: Path) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    servers = []
    for _ in range(count):
        server = await asyncio.start_server(lambda r, w: handle(r, w, ctx), "127.0.0.1", 0, backlog=64)
        servers.append(server)
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    tmp = portfile.with_suffix(".tmp")
    tmp.write_text("".join(f"{p}\n" for p in ports))
    tmp.replace(portfile)
    await asyncio.Event().wait()


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])))
