"""How a ``voucherd`` sub-command reaches the database.

The root command (``voucherd/cli.py``) puts an opener in typer's context object; every command,
the features' own sub-apps included, opens its database through it. So no feature's CLI imports
the root command, and tests can hand a command their own database.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import typer

from voucherd.db.engine import Database

Opener = Callable[[], AbstractContextManager[Database]]


def database(ctx: typer.Context) -> AbstractContextManager[Database]:
    opener: Opener = ctx.find_root().obj
    return opener()
