"""The one user-error type, and the one CLI wrapper every entry point uses: a user's mistake is one line, exit 2."""
from __future__ import annotations

import functools
import os
import sys

USER_EXIT = 2  # argparse's code for a usage error; 1 stays Python's code for a crash (a bug: with its traceback)


class ConfigError(ValueError):
    """A problem in what the user gave (a config field, a file, a data row): one line naming the field or file, its
    value and the valid choices. Every other exception is a bug in the suite and keeps its traceback."""


def cli(main):
    """Wrap an entry point: a ConfigError prints `error: <its line>` on stderr and exits 2, nothing else is caught.
    HYDRA_FULL_ERROR=1 re-raises it with its traceback, as Hydra does for its own errors."""
    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except ConfigError as err:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print(f"error: {err}", file=sys.stderr)
            sys.exit(USER_EXIT)
    return wrapped
