"""Errors that mean "the input was wrong", and the one place the command-line tools turn them into a
single ``error: ...`` line instead of a traceback.

Every check of a user's input (flags, YAML values, files, folders, checkpoints) raises a
:class:`UserError` whose message says what was wrong and what was expected. Any other exception is a
bug and keeps its traceback. ``MIXPRO_DEBUG=1`` shows the traceback of user errors too.
"""
from __future__ import annotations

import os
import sys
from typing import Callable, TypeVar

DEBUG_VARIABLE = "MIXPRO_DEBUG"

T = TypeVar("T")


class UserError(Exception):
    """Bad input; the message alone tells the user what to fix."""


class ConfigError(UserError, ValueError):
    """A flag or YAML value is out of its range, of the wrong type, or inconsistent with another."""


class InputNotFoundError(UserError, FileNotFoundError):
    """A file or folder the user named does not exist."""


class CheckpointError(UserError, ValueError):
    """A file given as a checkpoint cannot be read, or is not the kind of checkpoint expected."""


def run_tool(main: Callable[..., T], *args, **kwargs) -> T:
    """Call a tool's ``main``; a :class:`UserError` ends the process with ``error: <message>`` on
    stderr and exit status 2 (argparse's status for bad usage)."""
    try:
        return main(*args, **kwargs)
    except UserError as error:
        if os.environ.get(DEBUG_VARIABLE, "") not in ("", "0"):
            raise
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
