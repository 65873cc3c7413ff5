"""Routes a stream id to the model that scores it: the first model whose patterns match (shell-style)."""

from __future__ import annotations

from fnmatch import fnmatchcase


class Router:
    """``routes``: (model name, patterns) in priority order.

    >>> r = Router([("press", ("press-*",)), ("any", ("*",))])
    >>> r.model_for("press-07"), r.model_for("oven-1")
    ('press', 'any')
    """

    def __init__(self, routes: list[tuple[str, tuple[str, ...]]]) -> None:
        self._routes = routes

    def model_for(self, stream: str) -> str | None:
        # Not cached: only streams without state are routed, once per poll they appear in.
        return next(
            (name for name, patterns in self._routes if any(fnmatchcase(stream, p) for p in patterns)),
            None,
        )


_WILDCARDS = frozenset("*?[")


def covers(general: str, specific: str) -> bool:
    """True when every stream id ``specific`` matches is matched by ``general`` too; False may be wrong
    (only a literal id, an equal pattern, ``*`` and a literal prefix followed by ``*`` are compared).

    >>> covers("lane-*", "lane-1?"), covers("lane-*", "oven-1"), covers("lane-?", "lane-*")
    (True, False, False)
    """
    if general in ("*", specific):
        return True
    if not _WILDCARDS & set(specific):
        return fnmatchcase(specific, general)
    prefix = general[:-1]
    return general.endswith("*") and not _WILDCARDS & set(prefix) and specific.startswith(prefix)


def shadowed(routes: list[tuple[str, tuple[str, ...]]]) -> list[tuple[str, list[str]]]:
    """(model, the earlier models that take its streams) for each model none of whose patterns can win.

    >>> shadowed([("a", ("lane-*",)), ("b", ("oven-*",)), ("c", ("lane-1", "oven-2")), ("d", ("*",))])
    [('c', ['a', 'b'])]
    """
    out = []
    for i, (name, patterns) in enumerate(routes):
        takers = [
            next((e for e, theirs in routes[:i] if any(covers(p, q) for p in theirs)), None) for q in patterns
        ]
        if None not in takers:
            out.append((name, [t for t in dict.fromkeys(takers) if t is not None]))
    return out
