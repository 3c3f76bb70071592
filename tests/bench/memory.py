"""Peak resident memory of each service process (and its children), sampled in a thread every 0.5 s."""

from __future__ import annotations

import threading
from collections.abc import Mapping

import psutil  # type: ignore[import-untyped]

MB = 1024 * 1024


class MemorySampler:
    def __init__(self, pids: Mapping[str, int], interval: float = 0.5) -> None:
        self._processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._lock = threading.Lock()
        self.phase = "setup"
        self.peaks: dict[str, dict[str, float]] = {}
        """phase → service → peak RSS in MB"""
        self.samples = 0

    def rss(self, name: str) -> float:
        process = self._processes[name]
        try:
            total: int = process.memory_info().rss
            for child in process.children(recursive=True):
                total += child.memory_info().rss
        except psutil.Error:
            return 0.0
        return total / MB

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            readings = {name: self.rss(name) for name in self._processes}
            with self._lock:
                peaks = self.peaks.setdefault(self.phase, {})
                for name, value in readings.items():
                    peaks[name] = max(peaks.get(name, 0.0), value)
                self.samples += 1

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def overall(self, exclude: tuple[str, ...] = ("setup", "collect", "limits")) -> dict[str, float]:
        """Peak per service over the load phases (setup, result collection and the raw limits are not load)."""
        with self._lock:
            result: dict[str, float] = {}
            for phase, peaks in self.peaks.items():
                if phase in exclude:
                    continue
                for name, value in peaks.items():
                    result[name] = max(result.get(name, 0.0), value)
            return result
