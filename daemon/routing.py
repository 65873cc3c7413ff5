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
        self._cache: dict[str, str | None] = {}

    def model_for(self, stream: str) -> str | None:
        if stream not in self._cache:
            if len(self._cache) > 1_000_000:  # bounds memory when ids churn; recomputing is cheap
                self._cache.clear()
            self._cache[stream] = next(
                (name for name, patterns in self._routes if any(fnmatchcase(stream, p) for p in patterns)),
                None,
            )
        return self._cache[stream]
