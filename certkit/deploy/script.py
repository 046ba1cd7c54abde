"""The ``script:PATH`` target: any executable, run with the hook environment."""

from __future__ import annotations

from certkit import fsguard
from certkit.deploy.base import DeployContext
from certkit.deploy.hooks import run_hook, script_argv
from certkit.deploy.targets import script_path


def deploy(ctx: DeployContext) -> None:
    """Run the script with the contract's hook environment.

    Raises:
        HookError: the script exited non-zero or outlived its timeout.
    """
    path = script_path(ctx.target)
    # Root runs it: refuse a script (or the folder holding it) another user could have rewritten.
    fsguard.check_trusted_chain(path, "deploy script")
    fsguard.check_trusted(path, "deploy script", follow=True)
    timeout = ctx.options.get("timeout")
    run_hook(script_argv(path), ctx.hook_env, what=f"deploy hook {path}",
             timeout=float(timeout) if timeout else None, run=ctx.run, echo=ctx.echo)
