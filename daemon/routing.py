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
