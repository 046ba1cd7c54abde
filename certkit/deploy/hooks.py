"""The hook environment and the one way deploy hooks are run.

Every deploy hook - a ``script:PATH`` target, a shipped script, every
executable in ``$CERTKIT_HOME/hooks/deploy/`` - runs through
:func:`run_hook`: an argv list, certkit's environment plus the contract's
``CERTKIT_*`` variables (certkit's own ``os.environ`` is never modified,
unlike certbot's ``_run_deploy_hook``), a timeout (default 120 s), and the
captured output shown when it fails. A non-zero exit or a timeout fails the
run - certbot only logs a failed deploy hook and exits 0 (certbot#8528),
which leaves a broken server looking healthy.

certbot compatibility: ``RENEWED_LINEAGE`` is a folder holding cert.pem,
chain.pem, fullchain.pem and privkey.pem (certkit's ``live`` folder has
exactly those names) and ``RENEWED_DOMAINS`` is space-separated, so an
existing ``/etc/letsencrypt/renewal-hooks/deploy/*`` script runs unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from certkit import clock, fsguard, runner
from certkit import x509 as cx
from certkit.callbacks import Echo, Runner
from certkit.errors import HookError, OperationError, UsageError
from certkit.settings import LineageSettings
from certkit.store import Store

if TYPE_CHECKING:
    from cryptography import x509


# certkit's own secret inputs: hooks inherit certkit's environment, except these (runner.child_env).
SECRET_ENV = runner.SECRET_ENV
# Files in hooks/deploy/ that are never hooks (editor backups, package manager leftovers).
_IGNORED_SUFFIXES = ("~", ".bak", ".orig", ".dpkg-old", ".dpkg-new", ".dpkg-dist", ".rpmnew", ".rpmsave", ".swp")


def ensure_pfx(store: Store, settings: LineageSettings, version: int) -> None:
    """Give ``version`` a PFX (and a password file) if it has none yet.

    Targets that import into Windows (iis, exchange) need one even when the
    lineage was issued without ``--pfx``. The password comes from the same
    place as for ``issue --pfx`` (password file, ``CERTKIT_PFX_PASSWORD``,
    else generated); it is written next to the PFX (0600) so that
    ``CERTKIT_PFX_PASSWORD_FILE`` always names a readable file.
    """
    from certkit import export, keys

    paths = store.version_paths(settings.name, version)
    if paths.pfx.is_file():
        return
    files = store.read_version(settings.name, version)
    pfx, password, _generated = export.lineage_pfx(settings, keys.load_pem(files.key_pem),
                                                   cx.load_chain(files.cert_pem + files.chain_pem))
    with store.lock():
        store.add_pfx(settings.name, version, pfx, None if settings.pfx.password_file else password)


def ensure_pfx_password_file(store: Store, settings: LineageSettings, version: int) -> None:
    """Save the PFX password next to ``version``'s PFX when it came from env ``CERTKIT_PFX_PASSWORD``.

    Hooks (and iis.ps1/exchange.ps1) read the password from
    ``CERTKIT_PFX_PASSWORD_FILE`` only - the variable itself is not passed
    on - so a PFX made with the environment's password needs the file too.
    It is written 0600 beside the private key, which sits unencrypted in
    the same folder, so it exposes nothing new. A password that does not
    open the PFX (the environment changed since) is not written.
    """
    paths = store.version_paths(settings.name, version)
    password = os.environ.get("CERTKIT_PFX_PASSWORD")
    if not password or settings.pfx.password_file or not paths.pfx.is_file() or paths.pfx_password.is_file():
        return
    from cryptography.hazmat.primitives.serialization import pkcs12

    pfx = paths.pfx.read_bytes()
    try:
        pkcs12.load_key_and_certificates(pfx, password.encode())
    except ValueError:
        return
    with store.lock():
        store.add_pfx(settings.name, version, pfx, password)


def hook_env(
    store: Store,
    settings: LineageSettings,
    version: int,
    previous_version: int | None,
) -> dict[str, str]:
    """The contract's hook variables for ``version`` (only the CERTKIT_* / certbot ones).

    File paths are the lineage's stable live paths (what servers should be
    configured with), so ``version`` must be the live one when hooks run.
    ``CERTKIT_PREVIOUS_CERT`` is the previous version's own cert.pem (it does
    not move when the live link does); empty on the first issue.
    """
    name = settings.name
    live = store.live_paths(name)
    cert = cx.read_leaf(store.version_paths(name, version).cert)
    if cert is None:
        raise OperationError(f"version {version} of {name} has no readable certificate "
                             f"({store.version_paths(name, version).cert})",
                             f"issue a fresh one: certkit renew --force {name}")
    pfx_password_file = ""
    if live.pfx_password.is_file():
        pfx_password_file = str(live.pfx_password)
    elif settings.pfx.password_file:
        pfx_password_file = settings.pfx.password_file
    env = {
        "CERTKIT_HOME": str(store.home),
        "CERTKIT_NAME": name,
        "CERTKIT_VERSION": str(version),
        "CERTKIT_DOMAINS": " ".join(settings.domains),
        "CERTKIT_CERT": str(live.cert),
        "CERTKIT_KEY": "" if settings.csr else str(live.key),  # a CSR lineage's key is on another server
        "CERTKIT_CHAIN": str(live.chain),
        "CERTKIT_FULLCHAIN": str(live.fullchain),
        "CERTKIT_COMBINED": "" if settings.csr else str(live.combined),
        "CERTKIT_PFX": str(live.pfx) if live.pfx.is_file() else "",
        "CERTKIT_PFX_PASSWORD_FILE": pfx_password_file if live.pfx.is_file() else "",
        "CERTKIT_THUMBPRINT": cx.thumbprint(cert),
        "CERTKIT_SPKI_SHA256": cx.spki_sha256(cert),
        "CERTKIT_SHA256": cx.sha256_fingerprint(cert),
        "CERTKIT_NOT_AFTER": clock.iso(cx.not_after(cert)),
        "CERTKIT_PREVIOUS_CERT": "",
        "CERTKIT_PREVIOUS_THUMBPRINT": "",
        # the private CA that signed it (`issue --ca`): its name and its public root certificate, never its key
        **issuer_ca_env(store, settings, cert),
        # certbot's deploy-hook variables (certbot/_internal/hooks.py)
        "RENEWED_LINEAGE": str(live.dir),
        "RENEWED_DOMAINS": " ".join(settings.domains),
    }
    if previous_version is not None:
        prev = store.version_paths(name, previous_version).cert
        prev_cert = cx.read_leaf(prev)
        if prev_cert is not None:  # a damaged old version must not block deploying a good new one
            env["CERTKIT_PREVIOUS_CERT"] = str(prev)
            env["CERTKIT_PREVIOUS_THUMBPRINT"] = cx.thumbprint(prev_cert)
    return env


def issuer_ca_env(store: Store, settings: LineageSettings, cert: x509.Certificate) -> dict[str, str]:
    """``CERTKIT_ISSUER_CA`` (the CA name) and ``CERTKIT_ISSUER_CA_CERT`` (its root that signed ``cert``);
    both empty for lineages no private CA signs."""
    if settings.ca is None:
        return {"CERTKIT_ISSUER_CA": "", "CERTKIT_ISSUER_CA_CERT": ""}
    from certkit.ca import manage, storage

    generation = manage.generation_of(store, settings.ca, cert)
    root = storage.cert_path(store, settings.ca, generation) if generation is not None else ""
    return {"CERTKIT_ISSUER_CA": settings.ca, "CERTKIT_ISSUER_CA_CERT": str(root)}


def hook_dir(store: Store) -> Path:
    """``$CERTKIT_HOME/hooks/deploy``: every executable in it runs after each deploy."""
    return store.home / "hooks" / "deploy"


def hook_dir_scripts(store: Store, echo: Echo | None = None) -> list[Path]:
    """Executables in the hook folder, in name order (like run-parts).

    Dotfiles and editor/package backups are skipped; a plain file that is
    not executable is reported (a forgotten ``chmod +x`` is a classic) and
    skipped.
    """
    folder = hook_dir(store)
    if not folder.is_dir():
        return []
    # Root runs every file here: the folders and each script must be root's alone.
    store.check_home()
    fsguard.check_trusted(folder.parent, "hooks folder", follow=True)
    fsguard.check_trusted(folder, "hook folder")
    fsguard.check_trusted(folder, "hook folder", follow=True)
    try:
        entries = sorted(folder.iterdir(), key=lambda p: p.name)
    except OSError as exc:
        raise OperationError(f"cannot list the hook folder {folder}: {exc.strerror or exc}",
                             "check its permissions") from exc
    out: list[Path] = []
    for path in entries:
        if path.name.startswith(".") or path.name.endswith(_IGNORED_SUFFIXES) or not path.is_file():
            continue
        fsguard.check_trusted(path, "hook script")
        fsguard.check_trusted(path, "hook script", follow=True)
        if os.name != "nt" and not os.access(path, os.X_OK):
            if echo:
                echo(f"  skipped {path}: not executable (chmod +x it to run it after each deploy)")
            continue
        out.append(path)
    return out


def check_script(path: str) -> str:
    """An absolute path to an existing executable (exit 2 otherwise)."""
    full = Path(path).expanduser().absolute()
    if full.is_dir():
        raise UsageError(f"deploy script {full} is a folder", "give the path of an executable file in it")
    if not full.is_file():
        raise UsageError(f"deploy script {full} does not exist", "give the path of an executable file")
    if os.name != "nt" and not os.access(full, os.X_OK):
        raise UsageError(f"deploy script {full} is not executable", f"run: chmod +x {full}")
    return str(full)


def script_argv(path: str) -> list[str]:
    """How to start a hook file: directly, except PowerShell/batch files on Windows."""
    lower = path.lower()
    if lower.endswith(".ps1"):
        return ["powershell.exe", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-File", path]
    if os.name == "nt" and lower.endswith((".bat", ".cmd")):
        return ["cmd.exe", "/c", path]
    return [path]


def run_hook(
    argv: list[str],
    variables: Mapping[str, str],
    *,
    what: str,
    timeout: float | None = None,
    run: Runner = runner.run,
    echo: Echo | None = None,
) -> runner.Result:
    """Run one hook with certkit's environment plus ``variables``.

    Args:
        argv: the command (see :func:`script_argv`).
        variables: the hook environment (:func:`hook_env`).
        what: label for messages ("deploy hook /x/y").
        timeout: seconds (default :func:`certkit.runner.hook_timeout`).
        run: the subprocess runner (tests pass a recorder).
        echo: prints the hook's output lines when it succeeds.

    Raises:
        HookError: non-zero exit (with the output's tail) or timeout.
    """
    limit = timeout if timeout is not None else runner.hook_timeout()
    env = runner.child_env(variables)  # scrubbed of certkit's secrets there
    # Streamed as it comes (bounded, escapes stripped by the runner); on failure the tail is in the error.
    on_line = (lambda line: echo(f"    | {line}")) if echo else None
    result = run(argv, env=env, timeout=limit, what=what, hook=True, on_line=on_line)
    if not result.ok:
        raise HookError(runner.failure_message(what, result.returncode, result.output_tail(), prefix="    | "),
                        "fix the hook and run the deploy again")
    return result
