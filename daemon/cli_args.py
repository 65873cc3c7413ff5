"""Argument types and checks shared by the command-line parsers (`faultcast` and `faultcast evaluate`)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from daemon.errors import UsageError


def bounded(kind: Callable[[str], float], low: float, inclusive: bool = False) -> Callable[[str], float]:
    """An argparse type: a number of ``kind`` above ``low`` (at least ``low`` when ``inclusive``)."""

    def parse(text: str) -> float:
        value = kind(text)
        if not (value >= low if inclusive else value > low):
            raise argparse.ArgumentTypeError(
                f"must be {'at least' if inclusive else 'above'} {low:g}, got {text}"
            )
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def writable(path: Path, option: str, folder: bool = False) -> None:
    """Refuses an output (a file, or a ``folder``) that cannot be written, before any work is done: training
    takes minutes. Creates nothing."""
    target = path if folder else path.parent
    existing = next(p for p in (target, *target.parents) if p.exists() or p.is_symlink())
    if not existing.exists():
        raise UsageError(f"{option} {path}: {existing} is a link to nothing")
    if not existing.is_dir():
        raise UsageError(f"{option} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK):
        raise UsageError(f"{option} {path}: cannot write in {existing}")
    if not folder and path.is_symlink() and not path.exists():
        raise UsageError(f"{option} {path}: a link to nothing")
    if not folder and (path.is_dir() or (path.exists() and not os.access(path, os.W_OK))):
        raise UsageError(f"{option} {path}: cannot write this file")
