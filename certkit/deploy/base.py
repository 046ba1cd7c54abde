"""What every deploy target receives.

A target is a module in certkit.deploy with ``deploy(ctx)`` (and, when it
changes server configuration, ``rollback(ctx)`` that puts the saved files
back). Targets raise CertkitError subclasses (HookError, OperationError,
UsageError) and never print directly: they call ``ctx.echo``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from certkit import runner
from certkit.callbacks import Runner
from certkit.settings import LineageSettings
from certkit.store import LivePaths, Store


@dataclass
class DeployContext:
    """One target run for one lineage version.

    Attributes:
        target: the target name as the user wrote it ("postfix", "iis", "script:/x").
        store: the state directory (backups go through store.write_file).
        name: lineage name.
        settings: the lineage's settings.
        version: the version now live (being deployed).
        previous_version: the version live before, None on first issue.
        paths: stable live paths (what servers should point at).
        hook_env: the contract's hook environment for this version.
        options: this target's options (e.g. {"config_dir": "/etc/postfix"}).
        echo: prints one line for the user.
        run: the subprocess runner (certkit.runner.run; tests pass a recorder).
    """

    target: str
    store: Store
    name: str
    settings: LineageSettings
    version: int
    previous_version: int | None
    paths: LivePaths
    hook_env: Mapping[str, str]
    options: dict[str, Any] = field(default_factory=dict)
    echo: Callable[[str], None] = print
    run: Runner = runner.run
