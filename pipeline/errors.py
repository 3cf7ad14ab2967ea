"""One error type for everything a user can fix, and the CLI wrapper that prints it as one line."""

from __future__ import annotations

import sys
from collections.abc import Callable


class PipelineError(Exception):
    """A problem with the user's input (params, files, archives): the message says what and how to fix it."""


def run_cli(main: Callable[[list[str] | None], None], argv: list[str] | None = None) -> None:
    """Run a stage entry point, turning PipelineError into one line on stderr and exit code 1."""
    try:
        main(argv)
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
