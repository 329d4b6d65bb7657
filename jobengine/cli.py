"""The ``jobengine`` command line."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, help="jobengine: operate the job engine.")


def main() -> None:
    app()
