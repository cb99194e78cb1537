"""`expctl run` (owned by issue 3)."""

from __future__ import annotations

import typer

from expctl.cli.common import ConfigDirOpt, ConfigNameOpt, OverridesArg, SetOpt, handle_errors
from expctl.errors import NotImplementedYet


def register(app: typer.Typer) -> None:
    @app.command("run")
    @handle_errors
    def run(
        overrides: OverridesArg = None,
        config_dir: ConfigDirOpt = None,
        config_name: ConfigNameOpt = "config",
        sets: SetOpt = None,
    ) -> None:
        """Compose the config and train."""
        raise NotImplementedYet("expctl run")
