"""Run the guide's commands against the test fixtures and capture what they print.

The guide (docs/guide.md and docs/guide.ko.md) marks the shell blocks it
wants run and the text blocks that show their output::

    <!-- guide:run postfix/deploy -->
    ```sh
    certkit deploy mail.example.com --to postfix --setup-submission
    ```
    <!-- guide:output postfix/deploy -->
    ```text
    (filled in by this script)
    ```

A block name is ``WORLD/STEP``. Each world is one machine of the guide
with its own state directory: ``postfix`` (a private Postfix + Dovecot,
tests/servers/postfix.py), ``smtpd`` (``certkit smtpd`` on free ports),
``windows`` (the certkit side of IIS/Exchange), ``acme`` (Pebble,
tests/servers/pebble.py). Blocks run in the order of the English guide;
a ``guide:run`` marker may carry ``rc=N`` (expected exit status of the
block's last command, default 0) and ``background`` (start the one command
and leave it running until the world stops).

The guide is written for a real server (``mail.example.com``, ports 25/587/465,
``/etc/certkit``, ``/etc/postfix``). Before a command runs, :func:`World.forward`
rewrites it to the fixture (loopback ports, temporary folders, passwords
from files instead of prompts, ``--name`` for the certificate name the
loopback address lacks); afterwards :func:`World.reverse` rewrites the output
back. Nothing else is edited: every other character of the output shown in
the guide was printed by certkit.

Usage::

    python -m tests.guide_capture            # run everything, rewrite the guide's output blocks
    python -m tests.guide_capture --check    # run, compare with the guide, change nothing
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers.net import free_port as _free_port
from tests.servers.net import wait_port as _wait_port

REPO = Path(__file__).resolve().parents[1]
GUIDES = [REPO / "docs" / "guide.md", REPO / "docs" / "guide.ko.md"]
HOST = "mail.example.com"
WIN_HOST = "win.block25.or.kr"
STD_PORTS = {"smtp": 25, "submission": 587, "smtps": 465}
SMTP_USER = "alice@example.com"
SMTP_PASSWORD = "guide-test-password-1"  # test-only credential, never a real one
STEP_TIMEOUT = 120.0

_BLOCK_RE = re.compile(r"<!-- guide:(run|output) (\S+)([^>]*?)-->\s*\n```[\w-]*\n(.*?)```", re.S)
_URL_RE = re.compile(r"\b(smtp|submission|smtps)://" + re.escape(HOST) + r"(?::(\d+))?")
# Output that changes from run to run; masked before comparing a fresh run with the guide.
_VOLATILE = [
    (re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d)?Z?"), "<time>"),
    (re.compile(r"\d{4}-\d\d-\d\d"), "<date>"),
    (re.compile(r"\b[0-9A-Fa-f]{8,}\b"), "<hex>"),
    (re.compile(r"queued as \S+"), "queued as <id>"),
    (re.compile(r"^C: EHLO \S+", re.M), "C: EHLO <this host>"),  # certkit check names the machine it runs on
    (re.compile(r"/tmp/\S+"), "<tmp>"),
    (re.compile(r"\d+"), "<n>"),
    (re.compile(r"[ \t]+"), " "),
]


@dataclass
class Block:
    """One marked block of a guide."""

    kind: str  # "run" or "output"
    name: str
    attrs: dict[str, str]
    body: str
    span: tuple[int, int]  # of the body in the guide text

    @property
    def world(self) -> str:
        return self.name.split("/", 1)[0]

    def commands(self) -> list[str]:
        """The block's commands: comments and blank lines dropped, ``\\`` continuations joined."""
        out: list[str] = []
        pending = ""
        for raw in self.body.splitlines():
            line = raw.strip()
            if not pending and (not line or line.startswith("#")):
                continue
            if line.endswith("\\"):
                pending += line[:-1].strip() + " "
                continue
            out.append(pending + line)
            pending = ""
        if pending:
            out.append(pending.strip())
        return out


def parse_guide(text: str) -> list[Block]:
    """Every ``guide:run`` / ``guide:output`` block of a guide, in order."""
    blocks = []
    for match in _BLOCK_RE.finditer(text):
        attrs = {}
        for word in match.group(3).split():
            key, _, value = word.partition("=")
            attrs[key] = value or "yes"
        blocks.append(Block(match.group(1), match.group(2), attrs, match.group(4), match.span(4)))
    return blocks


def mask(text: str) -> str:
    """Text with times, fingerprints, numbers and temporary paths masked (for comparisons)."""
    for pattern, repl in _VOLATILE:
        text = pattern.sub(repl, text)
    return text.strip()




@dataclass
class Result:
    """What one command printed (already rewritten for the guide)."""

    command: str  # as the guide shows it
    argv_text: str  # as it ran
    returncode: int
    output: str


@dataclass
class World:
    """One machine of the guide: a state directory, a working folder, fixture ports."""

    name: str
    root: Path
    ports: dict[str, int] = field(default_factory=dict)  # smtp/submission/smtps -> loopback port
    postfix_dir: Path | None = None
    acme_args: str = ""
    dns_resolver: str = ""
    fixture_paths: list[tuple[str, str]] = field(default_factory=list)  # extra reverse rewrites
    background: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for sub in ("home", "work", "bin", "trust", "systemd", "run", "mail"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)  # Postfix reads the certificate files as its own user
        shim = self.root / "bin" / "certkit"
        shim.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m certkit \"$@\"\n")
        shim.chmod(0o755)
        self.password_file = self.root / "work" / ".smtp-password"
        self.password_file.write_text(SMTP_PASSWORD + "\n")
        self.password_file.chmod(0o600)

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def work(self) -> Path:
        return self.root / "work"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CERTKIT_")}
        env["PATH"] = f"{self.root / 'bin'}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
        env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["CERTKIT_HOME"] = str(self.home)  # the guide's /etc/certkit (root's default)
        env["COLUMNS"] = "200"
        return env

    # ----- rewriting -------------------------------------------------------------------------------

    def _literal_forward(self) -> list[tuple[str, str]]:
        subs = [("/etc/certkit", str(self.home)),
                ("/run/certkit-smtpd.pid", str(self.root / "run" / "smtpd.pid")),
                ("/var/spool/certkit-mail", str(self.root / "mail"))]
        if self.postfix_dir is not None:
            subs.append(("/etc/postfix", str(self.postfix_dir)))
        for scheme, std in STD_PORTS.items():
            if scheme in self.ports:
                subs.append((f"0.0.0.0:{std}", f"127.0.0.1:{self.ports[scheme]}"))
        return subs

    def forward(self, command: str) -> str:
        """The guide's command rewritten for this world's fixtures."""
        cmd = command
        for old, new in self._literal_forward():
            cmd = cmd.replace(old, new)
        cmd = _URL_RE.sub(lambda m: f"{m.group(1)}://127.0.0.1:{self.ports.get(m.group(1), 1)}", cmd)
        words = cmd.split()
        is_certkit = words[:1] == ["certkit"]
        sub = words[1] if len(words) > 1 else ""
        if is_certkit and sub == "check" and "--name" not in words and "://127.0.0.1" in cmd:
            cmd += f" --name {HOST}"  # the loopback address is not the certificate's name
        if is_certkit and "--auth-user" in words and "--password-file" not in words:
            cmd += f" --password-file {self.password_file}"  # the guide types it at the prompt
        if is_certkit and words[1:3] == ["smtpd", "adduser"] and "--password-file" not in words:
            cmd += f" --password-file {self.password_file}"
        if is_certkit and "--setup-submission" in words and self.postfix_dir is not None:
            listen = f"127.0.0.1:{self.ports['submission']}"
            cmd = cmd.replace("--submission-listen 587", f"--submission-listen {listen}")
            if "--submission-listen" not in words:
                cmd += f" --submission-listen {listen}"
            cmd += f" --postfix-config-dir {self.postfix_dir}"
        trusting = (sub == "selfssl" and any(w.upper() == "/T" for w in words)) or "--trust" in words
        if is_certkit and (trusting or words[1:3] in (["ca", "trust"], ["ca", "untrust"])):
            cmd += f" --trust-store-dir {self.root / 'trust'}"  # never the machine's own trust store
        if is_certkit and words[1:3] == ["timer", "install"] and "--print" not in words:
            cmd += f" --unit-dir {self.root / 'systemd'}"
        if is_certkit and "--acme" in words and self.acme_args:
            cmd = re.sub(r"--server \S+", "", cmd) + " " + self.acme_args
            # The guide's hook updates a real DNS server; here a stand-in sets the test DNS's records.
            cmd = re.sub(r"--dns-resolver \S+", f"--dns-resolver {self.dns_resolver}", cmd)
        if self.postfix_dir is not None:
            # The test instance has no chroot jail, and its port-465 stand-in is a loopback port.
            smtps = f"127.0.0.1:{self.ports['smtps']}"
            cmd = cmd.replace("submissions inet n - y", f"{smtps} inet n - n")
            cmd = cmd.replace("submissions/inet", f"{smtps}/inet")
            cmd = re.sub(r"^postconf\b", f"postconf -c {self.postfix_dir}", cmd)
            cmd = re.sub(r"^postfix (\w+)", rf"postfix -c {self.postfix_dir} \1", cmd)
        return cmd

    def reverse(self, text: str) -> str:
        """Output rewritten back from the fixtures to the guide's machine."""
        subs: list[tuple[str, str]] = [(str(self.root / "bin" / "certkit"), "/usr/local/bin/certkit"),
                                       (str(self.password_file), "~/.smtp-password"),
                                       (str(self.home), "/etc/certkit"),
                                       (str(self.root / "run" / "smtpd.pid"), "/run/certkit-smtpd.pid"),
                                       (str(self.root / "mail"), "/var/spool/certkit-mail"),
                                       (str(self.root / "systemd"), "/etc/systemd/system"),
                                       (str(self.root / "trust"), "/usr/local/share/ca-certificates"),
                                       (str(self.work) + "/", ""), (str(self.work), ".")]
        subs += self.fixture_paths
        subs.append((str(REPO / "certkit" / "deploy" / "powershell"),
                     "/usr/local/lib/python3/dist-packages/certkit/deploy/powershell"))
        if self.postfix_dir is not None:
            subs.append((str(self.postfix_dir), "/etc/postfix"))
        for old, new in subs:
            text = text.replace(old, new)
        for scheme, port in self.ports.items():
            std = STD_PORTS[scheme]
            text = re.sub(rf"\b{scheme}://127\.0\.0\.1:{port}\b", f"{scheme}://{HOST}", text)
            text = text.replace(f"127.0.0.1 port {port}", f"{HOST} port {std}")
            if self.postfix_dir is not None:
                text = text.replace(f"submission_listen=127.0.0.1:{port}", f"submission_listen={std}")
                text = text.replace(f"127.0.0.1:{port}", {"submission": "submission", "smtps": "submissions"}.get(
                    scheme, scheme))
            else:
                text = text.replace(f"127.0.0.1:{port}", f"0.0.0.0:{std}")
        return text

    # ----- running ---------------------------------------------------------------------------------

    def run(self, command: str, background: bool = False) -> Result:
        """Run one guide command (rewritten) with bash; return its rewritten output."""
        argv_text = self.forward(command)
        if background:
            log = open(self.root / "run" / "background.log", "wb")
            proc = subprocess.Popen(["bash", "-c", "exec " + argv_text], cwd=self.work, env=self.env(),
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            self.background.append(proc)
            port = self.ports.get("submission")
            if port and not _wait_port(port, 15):
                raise RuntimeError(f"{command!r} did not listen:\n{(self.root / 'run' / 'background.log').read_text()}")
            return Result(command, argv_text, 0, "")
        res = subprocess.run(["bash", "-c", argv_text], cwd=self.work, env=self.env(), capture_output=True,
                             text=True, timeout=STEP_TIMEOUT, stdin=subprocess.DEVNULL)
        return Result(command, argv_text, res.returncode, self.reverse(res.stdout + res.stderr).rstrip())

    def stop(self) -> None:
        for proc in self.background:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


_POST = ("import sys, urllib.request; urllib.request.urlopen(urllib.request.Request("
         "sys.argv[1], data=sys.argv[2].encode(), method=\"POST\"), timeout=10).read()")


def _write_dns_hook(path: Path, challtest_url: str) -> None:
    """A stand-in for the guide's nsupdate hook: the same contract, the test DNS server's API."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"""#!/bin/sh
case "$CERTKIT_DNS_ACTION" in
  present) body="{{\\"host\\": \\"$CERTKIT_DNS_NAME.\\", \\"value\\": \\"$CERTKIT_DNS_VALUE\\"}}"; op=set-txt ;;
  cleanup) body="{{\\"host\\": \\"$CERTKIT_DNS_NAME.\\"}}"; op=clear-txt ;;
esac
exec {shlex.quote(sys.executable)} -c '{_POST}' "{challtest_url}/$op" "$body"
""")
    path.chmod(0o700)


@contextlib.contextmanager
def worlds(needed: set[str], base: Path | None = None) -> Iterator[dict[str, World]]:
    """Start the fixtures the named worlds need; stop them afterwards.

    Raises:
        RuntimeError: a fixture cannot start here (the message says why).
    """
    base = Path(base or tempfile.mkdtemp(prefix="certkit-guide-", dir="/tmp"))
    base.chmod(0o755)
    made: dict[str, World] = {}
    stops: list[object] = []
    try:
        if "postfix" in needed:
            from tests.servers.postfix import start_postfix

            pf = start_postfix(hostname=HOST)
            stops.append(pf)
            # The guide's user; Dovecot re-reads a passwd-file whose mtime changed.
            (pf.base / "dovecot" / "users").write_text(f"{SMTP_USER}:{{PLAIN}}{SMTP_PASSWORD}\n")
            made["postfix"] = World("postfix", base / "postfix", {"smtp": pf.smtp_port,
                                                                  "submission": pf.submission_port,
                                                                  "smtps": _free_port()},
                                    postfix_dir=pf.config_dir)
        if "smtpd" in needed:
            made["smtpd"] = World("smtpd", base / "smtpd", {"submission": _free_port(), "smtps": _free_port()})
        for name in needed - {"postfix", "smtpd", "acme"}:
            made[name] = World(name, base / name)  # a plain machine: no servers
        if "acme" in needed:
            from tests.servers.pebble import start_pebble

            work = base / "pebble"
            work.mkdir(parents=True, exist_ok=True)
            peb = start_pebble(work)
            stops.append(peb)
            directory = peb.directory_url.rsplit("/", 1)[0]
            acme = World("acme", base / "acme",
                         acme_args=f"--server {peb.directory_url} --ca-bundle {peb.ca_bundle} "
                                   f"--http-port {peb.http_port} --http-address 127.0.0.1",
                         dns_resolver=f"127.0.0.1:{peb.dns_port}",
                         fixture_paths=[(directory, "https://localhost:14000")])  # Pebble's usual port
            _write_dns_hook(acme.home / "dns-hook.sh", peb.challtest_url)
            made["acme"] = acme
        yield made
    finally:
        for world in made.values():
            world.stop()
        for obj in reversed(stops):
            with contextlib.suppress(Exception):
                obj.stop()  # type: ignore[attr-defined]
        shutil.rmtree(base, ignore_errors=True)


def run_guide(text: str, base: Path | None = None) -> dict[str, list[Result]]:
    """Run every ``guide:run`` block of ``text`` in order; results by block name.

    Raises:
        AssertionError: a block's last command did not exit as its marker says.
    """
    runs = [b for b in parse_guide(text) if b.kind == "run"]
    out: dict[str, list[Result]] = {}
    with worlds({b.world for b in runs}, base) as made:
        for block in runs:
            world = made[block.world]
            want = int(block.attrs.get("rc", "0"))
            cmds = block.commands()
            results = []
            for i, cmd in enumerate(cmds):
                res = world.run(cmd, background="background" in block.attrs)
                results.append(res)
                expected = want if i == len(cmds) - 1 else 0
                if res.returncode != expected:
                    raise AssertionError(f"{block.name}: `{cmd}` exited {res.returncode}, the guide says "
                                         f"{expected}\n(ran: {res.argv_text})\n{res.output}")
            out[block.name] = results
    return out


def render(results: list[Result]) -> str:
    """An output block's text: ``$ command`` then what it printed, for each command."""
    parts = []
    for res in results:
        parts.append(f"$ {res.command}" + (f"\n{res.output}" if res.output else ""))
    return "\n".join(parts) + "\n"


def fill(text: str, results: dict[str, list[Result]]) -> str:
    """The guide text with every ``guide:output`` block replaced by the captured output."""
    pieces = []
    last = 0
    for block in parse_guide(text):
        if block.kind != "output":
            continue
        if block.name not in results:
            raise KeyError(f"guide:output {block.name} has no guide:run block")
        pieces += [text[last:block.span[0]], render(results[block.name])]
        last = block.span[1]
    pieces.append(text[last:])
    return "".join(pieces)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the guides; write nothing")
    args = parser.parse_args(argv)
    english = GUIDES[0].read_text(encoding="utf-8")
    started = time.monotonic()
    results = run_guide(english)
    print(f"ran {sum(len(r) for r in results.values())} commands in {time.monotonic() - started:.1f} s")
    status = 0
    for guide in GUIDES:
        if not guide.is_file():
            print(f"{guide} does not exist yet")
            continue
        old = guide.read_text(encoding="utf-8")
        new = fill(old, results)
        if args.check:
            if mask(new) != mask(old):
                print(f"{guide}: captured output differs from the guide")
                status = 1
        elif new != old:
            guide.write_text(new, encoding="utf-8")
            print(f"updated {guide}")
    return status


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
