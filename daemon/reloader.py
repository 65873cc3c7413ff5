"""Model hot reload: on SIGHUP or when a model file changes, swap versions between two polls."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from daemon.config import Config
from daemon.errors import FaultcastError
from daemon.metrics import Metrics
from daemon.processor import Processor

log = logging.getLogger("faultcast.reload")


class ModelReloader:
    def __init__(
        self, config: Config, processor: Processor, metrics: Metrics, on_change: Callable[[], None]
    ) -> None:
        self.config = config
        self.processor = processor
        self.metrics = metrics
        self.on_change = on_change
        self.requested = threading.Event()  # set by the SIGHUP handler
        self._model_files = self._stat_models()
        self._next_watch = time.monotonic() + config.reload.watch_interval_s
        for model in config.models:
            metrics.reload_failing.labels(model=model.name).set(0)

    def _stat_models(self) -> dict[str, tuple[int, int]]:
        stats = {}
        for model in self.config.models:
            try:
                st = os.stat(model.path)
            except OSError:
                continue  # a file being replaced; the next check sees the new one
            stats[model.name] = (st.st_mtime_ns, st.st_size)
        return stats

    def check(self) -> None:
        """Between polls, so no wave is cut and no record is dropped: SIGHUP or a changed model file."""
        interval = self.config.reload.watch_interval_s
        if interval > 0 and time.monotonic() >= self._next_watch:
            self._next_watch = time.monotonic() + interval
            stats = self._stat_models()
            if stats != self._model_files:
                self._model_files = stats
                log.info("model file changed; reloading")
                self.requested.set()
        if not self.requested.is_set():
            return
        self.requested.clear()
        log.info("reloading models", extra={"models": [m.name for m in self.config.models]})
        for model in self.config.models:
            runtime = self.processor.runtimes[model.name]
            try:
                reloaded = runtime.reload(Path(model.path))
            except FaultcastError as exc:
                log.error(
                    "model reload failed; the loaded version keeps running",
                    extra={"model": model.name, "error": str(exc)},
                )
                self.metrics.reloads.labels(model=model.name, result="failed").inc()
                # Until a reload succeeds: the file on disk is what the next restart will fail to load.
                self.metrics.reload_failing.labels(model=model.name).set(1)
                continue
            self.metrics.reload_failing.labels(model=model.name).set(0)
            if reloaded is None:
                log.info("model unchanged; the loaded version keeps running", extra={"model": model.name})
                self.metrics.reloads.labels(model=model.name, result="unchanged").inc()
                continue
            result = "kept_state" if reloaded.kept_state else "reset_state"
            self.metrics.reloads.labels(model=model.name, result=result).inc()
            self.metrics.stream_resets.labels(reason="model_reload").inc(reloaded.streams_reset)
            log.info(
                "model reloaded",
                extra={
                    "model": model.name,
                    "version": runtime.engine.info.version,
                    "result": result,
                    "streams_reset": reloaded.streams_reset,
                },
            )
        self.on_change()
