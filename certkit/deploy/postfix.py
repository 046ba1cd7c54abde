"""The ``postfix`` deploy target: STARTTLS on 25, optional 587 submission, reload.

What it does, in order (every postconf/postfix call carries ``-c DIR``):

1. Back up main.cf and master.cf into the lineage's ``backups/postfix/``
   (``last/`` before every run, for rollback; ``original/`` once, the files
   as they were before certkit first touched them).
2. main.cf: ``smtpd_tls_chain_files`` = the lineage's live ``combined.pem``
   (key + full chain in one file; the ``live`` link is swapped atomically,
   so a reload never pairs a new certificate with an old key - the reason
   Postfix 3.4 added chain files); ``smtpd_tls_security_level = may`` when
   TLS is off (opportunistic STARTTLS, RFC 3207 / RFC 7435); TLS >= 1.2
   for ``smtpd_tls_protocols`` and ``smtpd_tls_mandatory_protocols``
   (RFC 8996 deprecates 1.0/1.1); ``smtpd_tls_exclude_ciphers`` drops the
   anonymous and broken suites when the admin has not set it. SASL
   settings are left as they are.
3. With ``setup_submission``: the submission service (RFC 6409) is created
   with ``postconf -M`` if missing, and its ``-o`` overrides set with
   ``postconf -P``: STARTTLS required (``smtpd_tls_security_level=encrypt``),
   SASL AUTH on, AUTH only after TLS (RFC 4954 section 4), relay and
   recipients ``permit_sasl_authenticated,reject``. Only values that differ
   are written, so a second run changes nothing.
4. ``postfix check``, then ``postfix reload`` (``start`` if it is stopped):
   smtpd processes read the chain file when they start, so a reload is what
   makes a new certificate served.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from certkit.atomicfile import atomic_write
from certkit.callbacks import Runner
from certkit.deploy.base import DeployContext
from certkit.errors import HookError, OperationError, UsageError
from certkit.polling import Backoff
from certkit.store import LivePaths

DEFAULT_CONFIG_DIR = "/etc/postfix"
DEFAULT_SUBMISSION_LISTEN = "587"
CONFIG_FILES = ("main.cf", "master.cf")
RELOAD_SETTLE_MAX = 3.0  # seconds to wait for pre-reload smtpd processes to exit
RELOAD_FALLBACK_WAIT = 0.5  # without /proc
MODERN_PROTOCOLS = ">=TLSv1.2"  # Postfix >= 3.6 syntax
LEGACY_PROTOCOLS = "!SSLv2, !SSLv3, !TLSv1, !TLSv1.1"  # same policy for Postfix < 3.6
# Postfix's default cipher lists keep anonymous (aNULL) suites: they authenticate nobody, so a
# client that offers them can be intercepted - fatal for AUTH on 587. Only set when the admin has no list.
EXCLUDE_CIPHERS = "aNULL, eNULL, EXPORT, DES, RC4, MD5, 3DES"
SASL_HINT = (
    "Postfix has no SASL backend configured, so the submission port cannot offer AUTH. "
    "With Dovecot add to main.cf:\n"
    "      smtpd_sasl_type = dovecot\n"
    "      smtpd_sasl_path = private/auth\n"
    "    and to Dovecot's conf.d/10-master.conf:\n"
    "      service auth {\n"
    "        unix_listener /var/spool/postfix/private/auth {\n"
    "          mode = 0660\n"
    "          user = postfix\n"
    "          group = postfix\n"
    "        }\n"
    "      }\n"
    "    then run the deploy again (see docs/deploy/postfix.md)"
)


def submission_overrides(protocols: str) -> dict[str, str]:
    """The ``-o`` settings certkit puts on the submission service."""
    return {
        "syslog_name": "postfix/submission",
        "smtpd_tls_security_level": "encrypt",
        "smtpd_sasl_auth_enable": "yes",
        "smtpd_tls_auth_only": "yes",
        "smtpd_tls_protocols": protocols,
        "smtpd_tls_mandatory_protocols": protocols,
        "smtpd_relay_restrictions": "permit_sasl_authenticated,reject",
        "smtpd_recipient_restrictions": "permit_sasl_authenticated,reject",
        "milter_macro_daemon_name": "ORIGINATING",
    }


def _tool(name: str) -> str:
    # /usr/sbin is often not on a non-login PATH (cron, sudo -u).
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/sbin", "/usr/local/sbin", "/opt/local/sbin"):
        candidate = Path(folder) / name
        if candidate.is_file():
            return str(candidate)
    raise OperationError(f"{name} was not found", "install Postfix, or put its sbin folder on PATH")


@dataclass
class Postfix:
    """One Postfix configuration folder, driven through postconf/postfix ``-c DIR``."""

    config_dir: Path
    run: Runner

    def _cmd(self, tool: str, *args: str, what: str, check: bool = True) -> str:
        result = self.run([_tool(tool), "-c", str(self.config_dir), *args], timeout=120, what=what)
        if check and not result.ok:
            tail = result.output_tail()
            raise HookError(f"{what} failed (status {result.returncode})" + (f":\n{tail}" if tail else ""),
                            f"fix the Postfix configuration in {self.config_dir} and deploy again")
        return result.stdout

    def values(self, *names: str) -> dict[str, str]:
        """Effective main.cf values (defaults included)."""
        out = self._cmd("postconf", *names, what="postconf")
        return dict(_parse_assignments(out))

    def explicit(self) -> dict[str, str]:
        """Parameters set in main.cf (``postconf -n``)."""
        return dict(_parse_assignments(self._cmd("postconf", "-n", what="postconf -n")))

    def set_main(self, values: dict[str, str]) -> None:
        self._cmd("postconf", "-e", *(f"{k}={v}" for k, v in values.items()), what="postconf -e")

    def services(self) -> list[list[str]]:
        """master.cf entries as field lists (service, type, private, unpriv, chroot, wakeup, maxproc, command...)."""
        out = self._cmd("postconf", "-M", what="postconf -M")
        return [line.split() for line in out.splitlines() if line.strip()]

    def service_params(self, service: str) -> dict[str, str]:
        """The ``-o`` overrides of ``service/inet``."""
        out = self._cmd("postconf", "-P", what="postconf -P")
        prefix = f"{service}/inet/"
        return {k[len(prefix):]: v for k, v in _parse_assignments(out) if k.startswith(prefix)}

    def add_service(self, entry: str, service: str) -> None:
        self._cmd("postconf", "-M", f"{service}/inet={entry}", what="postconf -M")

    def set_service_params(self, service: str, values: dict[str, str]) -> None:
        self._cmd("postconf", "-P", *(f"{service}/inet/{k}={v}" for k, v in values.items()), what="postconf -P")

    def check(self) -> None:
        self._cmd("postfix", "check", what="postfix check")

    def running(self) -> bool:
        result = self.run([_tool("postfix"), "-c", str(self.config_dir), "status"], timeout=60,
                          what="postfix status")
        return result.ok

    def reload(self) -> None:
        """``postfix reload``, then wait until the smtpd processes started before it are gone.

        ``postfix reload`` only sends master a SIGHUP and returns. Until
        master has re-read its configuration and closed the old children's
        status pipes, an idle old smtpd can still accept the next connection
        and serve the old certificate (seen here: a verification right after
        a rollback got the version being rolled back). Idle old children exit
        within milliseconds; one busy with a client finishes its session
        first, so the wait is capped.
        """
        master = self.master_pid()
        before = _smtpd_children(master) if master else set()
        self._cmd("postfix", "reload", what="postfix reload")
        if master is None or not Path("/proc/self/stat").exists():
            time.sleep(RELOAD_FALLBACK_WAIT)  # no /proc: give master a moment to act on SIGHUP
            return
        backoff = Backoff(deadline=time.monotonic() + RELOAD_SETTLE_MAX, first=0.02, growth=1.0)
        while before and backoff.wait():
            before &= _smtpd_children(master)

    def master_pid(self) -> int | None:
        """The running master's pid (from queue_directory/pid/master.pid), None when unknown."""
        queue = self.values("queue_directory").get("queue_directory", "")
        try:
            return int((Path(queue) / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def reload_or_start(self) -> str:
        if self.running():
            self.reload()
            return "reloaded"
        self._cmd("postfix", "start", what="postfix start")
        return "started"


def _smtpd_children(master: int) -> set[int]:
    """Pids of smtpd processes whose parent is ``master`` (Linux /proc; empty elsewhere)."""
    found: set[int] = set()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # exited meanwhile
        # "pid (comm) state ppid ...": comm may contain spaces, so split after the last ')'
        comm = stat[stat.find("(") + 1:stat.rfind(")")]
        fields = stat[stat.rfind(")") + 2:].split()
        if comm == "smtpd" and len(fields) > 1 and fields[1] == str(master):
            found.add(int(entry))
    return found


def _parse_assignments(text: str) -> list[tuple[str, str]]:
    pairs = []
    for line in text.splitlines():
        key, sep, value = line.partition(" = ")
        if sep:
            pairs.append((key.strip(), value.strip()))
        elif line.rstrip().endswith(" ="):
            pairs.append((line.rstrip()[:-2].strip(), ""))
    return pairs


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def protocols_for(mail_version: str) -> str:
    """``>=TLSv1.2`` on Postfix 3.6+, the equivalent exclusion list before."""
    return MODERN_PROTOCOLS if _version_tuple(mail_version) >= (3, 6) else LEGACY_PROTOCOLS


def tls_file_settings(mail_version: str, paths: LivePaths) -> dict[str, str]:
    """main.cf file parameters for the lineage's live files.

    Postfix 3.4+: ``smtpd_tls_chain_files`` = the combined key + full chain
    file, one file so the key and certificate always match. Older Postfix
    (CentOS 7 ships 2.10) has no chain files: the full chain and key go in
    ``smtpd_tls_cert_file``/``smtpd_tls_key_file``, both behind the same
    atomically swapped ``live`` link.
    """
    if _version_tuple(mail_version) >= (3, 4) or not mail_version:
        return {"smtpd_tls_chain_files": str(paths.combined)}
    return {"smtpd_tls_cert_file": str(paths.fullchain), "smtpd_tls_key_file": str(paths.key)}


def protocols_ok(value: str) -> bool:
    """True when a protocols value already allows nothing below TLS 1.2."""
    text = value.replace(" ", "").replace(",", ":")
    if text.startswith(">=TLSv1.2") or text.startswith(">=TLSv1.3"):
        return True
    parts = set(text.split(":"))
    return {"!SSLv2", "!SSLv3", "!TLSv1", "!TLSv1.1"} <= parts or (
        {"!SSLv3", "!TLSv1", "!TLSv1.1"} <= parts  # SSLv2 is gone from every OpenSSL Postfix links
    )


def parse_listen(listen: str) -> tuple[str, list[str]]:
    """``[ADDR:]PORT`` -> (the master.cf service name to create, every name meaning the same socket).

    Raises:
        UsageError: not a port or ADDR:PORT (exit 2).
    """
    text = listen.strip()
    addr, _, port = text.rpartition(":")  # IPv6 stays in brackets, as master.cf wants it
    if not port.isdigit() or not 0 < int(port) < 65536 or (":" in addr and not addr.startswith("[")):
        raise UsageError(f"--submission-listen {listen!r} is not [ADDR:]PORT",
                         "use 587, 127.0.0.1:587 or [::1]:587")
    ports = [port, "submission"] if port == "587" else [port]
    if addr:
        names = [f"{addr}:{p}" for p in ports]
        return f"{addr}:{port}" if port != "587" else f"{addr}:submission", names
    return ports[-1] if port == "587" else port, ports


def _slug(config_dir: Path) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", str(config_dir).strip("/")) or "root"


def _backup_rel(ctx: DeployContext, config_dir: Path, kind: str, fname: str) -> str:
    return f"lineages/{ctx.name}/backups/postfix/{_slug(config_dir)}/{kind}/{fname}"


def config_dir_of(ctx: DeployContext) -> Path:
    """The Postfix config folder for this run (option ``config_dir``, default /etc/postfix)."""
    folder = Path(ctx.options.get("config_dir") or DEFAULT_CONFIG_DIR)
    if not (folder / "main.cf").is_file():
        raise UsageError(f"{folder}/main.cf does not exist",
                         "pass the Postfix configuration folder with --postfix-config-dir")
    return folder


def backup(ctx: DeployContext, config_dir: Path) -> None:
    """Save main.cf and master.cf before any change (``last/``; ``original/`` only once)."""
    with ctx.store.lock():
        for fname in CONFIG_FILES:
            path = config_dir / fname
            if not path.is_file():
                continue
            data = path.read_bytes()
            ctx.store.write_file(_backup_rel(ctx, config_dir, "last", fname), data)
            original = _backup_rel(ctx, config_dir, "original", fname)
            if ctx.store.read_file(original) is None:
                ctx.store.write_file(original, data)


def check_instance(config_dir: Path, run: Runner) -> None:
    """Refuse a config folder the default main.cf does not declare as a Postfix instance (exit 2).

    Postfix only accepts ``-c DIR`` for the default folder or one listed in
    the default main.cf's ``alternate_config_directories`` /
    ``multi_instance_directories`` (``postmulti`` adds them there). Run as
    root, ``postfix -c DIR start`` does not always enforce it: a copied
    main.cf would start a second master on the system's queue - so certkit
    checks first.
    """
    default = run([_tool("postconf"), "-d", "-h", "config_directory"], timeout=60, what="postconf -d")
    default_dir = Path(default.stdout.strip() or DEFAULT_CONFIG_DIR)
    if _same_dir(config_dir, default_dir):
        return
    listed = run([_tool("postconf"), "-c", str(default_dir), "-h", "alternate_config_directories",
                  "multi_instance_directories"], timeout=60, what="postconf")
    known = listed.stdout.replace(",", " ").split()
    if not any(_same_dir(config_dir, Path(d)) for d in known):
        raise UsageError(
            f"{config_dir} is not a Postfix instance: the default {default_dir}/main.cf does not list it in "
            "alternate_config_directories or multi_instance_directories",
            f"create the instance with postmulti, or add it: postconf -e 'alternate_config_directories = "
            f"{' '.join([*known, str(config_dir)])}'",
        )


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def preflight(ctx: DeployContext) -> None:
    """Refuse a missing/undeclared config folder or a bad --submission-listen before any target runs (exit 2)."""
    config_dir = config_dir_of(ctx)
    parse_listen(str(ctx.options.get("submission_listen") or DEFAULT_SUBMISSION_LISTEN))
    check_instance(config_dir, ctx.run)


def deploy(ctx: DeployContext) -> None:
    """Point Postfix at the lineage's combined file, set the TLS policy, reload.

    Raises:
        UsageError: the config folder or an option is wrong (exit 2).
        HookError: postconf, ``postfix check`` or the reload failed.
    """
    config_dir = config_dir_of(ctx)
    listen = str(ctx.options.get("submission_listen") or DEFAULT_SUBMISSION_LISTEN)
    submission = bool(ctx.options.get("setup_submission"))
    service, aliases = parse_listen(listen)  # bad input fails before anything is touched
    pf = Postfix(config_dir, ctx.run)
    # A listen name taken by another program is refused before main.cf is touched (exit 2, nothing changed).
    existing = _submission_entry(pf, aliases) if submission else None
    backup(ctx, config_dir)
    current = pf.values("mail_version", "smtpd_tls_chain_files", "smtpd_tls_cert_file", "smtpd_tls_key_file",
                        "smtpd_tls_security_level",
                        "smtpd_tls_protocols", "smtpd_tls_mandatory_protocols", "smtpd_use_tls",
                        "smtpd_tls_exclude_ciphers")
    protocols = protocols_for(current.get("mail_version", ""))
    mail_version = current.get("mail_version", "")
    changes: dict[str, str] = {}
    for key, value in tls_file_settings(mail_version, ctx.paths).items():
        if current.get(key, "") != value:
            changes[key] = value
    served = next(iter(tls_file_settings(mail_version, ctx.paths).values()))
    _warn_if_replacing_lineage(ctx, current.get(next(iter(tls_file_settings(mail_version, ctx.paths))), ""))
    if current.get("smtpd_tls_security_level", "") in ("", "none"):
        changes["smtpd_tls_security_level"] = "may"
    for param in ("smtpd_tls_protocols", "smtpd_tls_mandatory_protocols"):
        if not protocols_ok(current.get(param, "")):
            changes[param] = protocols
    if not current.get("smtpd_tls_exclude_ciphers", "").strip():
        changes["smtpd_tls_exclude_ciphers"] = EXCLUDE_CIPHERS
    if changes:
        pf.set_main(changes)
        for key, value in changes.items():
            ctx.echo(f"  postfix: main.cf {key} = {value}")
    if submission:
        _setup_submission(ctx, pf, service, existing, protocols)
    pf.check()
    action = pf.reload_or_start()
    ctx.echo(f"  postfix: {config_dir} {action}; serving {served} (version {ctx.version})")


def _submission_entry(pf: Postfix, aliases: list[str]) -> list[str] | None:
    """The master.cf inet entry already listening where submission should; exit 2 if it is not smtpd."""
    existing = next((e for e in pf.services() if len(e) >= 8 and e[1] == "inet" and e[0] in aliases), None)
    if existing is not None and existing[7] != "smtpd":
        raise UsageError(f"master.cf service {existing[0]}/inet runs {existing[7]}, not smtpd",
                         "remove or rename that entry, or choose another --submission-listen")
    return existing


def _warn_if_replacing_lineage(ctx: DeployContext, current: str) -> None:
    """Say so when main.cf served another certkit lineage: Postfix serves one certificate, and
    that lineage's next renewal would switch it back (both keep the postfix target)."""
    lineages = ctx.store.home / "lineages"
    try:
        other = Path(current).relative_to(lineages).parts[0] if current else ""
    except ValueError:
        return  # a file certkit does not manage
    if other and other != ctx.name:
        ctx.echo(f"  warning: postfix served lineage {other}; it now serves {ctx.name}. {other} still has the "
                 f"postfix target, so its next renewal switches back: put all names in one lineage, or edit "
                 f"{lineages / other / 'settings.toml'} to drop its postfix target")


def _setup_submission(ctx: DeployContext, pf: Postfix, service: str, existing: list[str] | None,
                      protocols: str) -> None:
    if existing is None:
        # Same chroot choice as the main smtp service: a jail that works there works here.
        entries = pf.services()
        smtp = next((e for e in entries if len(e) >= 8 and e[1] == "inet" and e[7] == "smtpd"), None)
        chroot = smtp[4] if smtp else "n"
        pf.add_service(f"{service} inet n - {chroot} - - smtpd", service)
        ctx.echo(f"  postfix: master.cf added the submission service {service}")
    else:
        service = existing[0]
    have = pf.service_params(service)
    wanted = submission_overrides(protocols)
    if protocols_ok(have.get("smtpd_tls_protocols", "")):
        wanted.pop("smtpd_tls_protocols")
    if protocols_ok(have.get("smtpd_tls_mandatory_protocols", "")):
        wanted.pop("smtpd_tls_mandatory_protocols")
    if have.get("syslog_name"):
        wanted.pop("syslog_name")  # the admin's log tag is theirs
    todo = {k: v for k, v in wanted.items() if have.get(k) != v}
    if todo:
        pf.set_service_params(service, todo)
        ctx.echo(f"  postfix: master.cf {service}: " + ", ".join(f"{k}={v}" for k, v in todo.items()))
    else:
        ctx.echo(f"  postfix: master.cf {service} already has certkit's submission policy")
    explicit = pf.explicit()
    if not any(k in explicit for k in ("smtpd_sasl_type", "smtpd_sasl_path")) and not any(
        k in have for k in ("smtpd_sasl_type", "smtpd_sasl_path")
    ):
        ctx.echo(f"  warning: {SASL_HINT}")


def rollback(ctx: DeployContext) -> None:
    """Put back the main.cf/master.cf saved before this run and reload Postfix.

    The pipeline makes the previous version live first, so the reload serves
    it with exactly the configuration Postfix had before the failed run.

    Raises:
        HookError: the restored configuration does not check or reload.
    """
    config_dir = Path(ctx.options.get("config_dir") or DEFAULT_CONFIG_DIR)
    restored = []
    for fname in CONFIG_FILES:
        data = ctx.store.read_file(_backup_rel(ctx, config_dir, "last", fname))
        path = config_dir / fname
        if data is None or not path.is_file() or path.read_bytes() == data:
            continue
        atomic_write(path, data, os.stat(path).st_mode & 0o7777)
        restored.append(fname)
    if restored:
        ctx.echo(f"  postfix: restored {', '.join(restored)} in {config_dir}")
    pf = Postfix(config_dir, ctx.run)
    if pf.running():
        pf.check()
        pf.reload()
        ctx.echo(f"  postfix: {config_dir} reloaded; serving {ctx.paths.combined} "
                 f"(version {ctx.store.live_version(ctx.name)})")
