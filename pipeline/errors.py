"""One error type for everything a user can fix, and the CLI wrapper that prints it as one line."""

from __future__ import annotations

import sys
from collections.abc import Callable


class PipelineError(Exception):
    """A problem with the user's input (params, files, archives): the message says what and how to fix it."""


def run_cli(
    main: Callable[[list[str] | None], None],
    argv: list[str] | None = None,
    interrupted: str = "nothing half-written is left behind; run it again",
) -> None:
    """Run a stage entry point, turning PipelineError into one line on stderr and exit code 1, and Ctrl-C
    into one line saying what `interrupted` leaves (every output is written atomically) and exit code 130."""
    try:
        main(argv)
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"interrupted: {interrupted}", file=sys.stderr)
        sys.exit(130)
