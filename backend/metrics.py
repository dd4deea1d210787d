"""Serving figures for /metrics: counts, latency percentiles, throughput."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any


class Metrics:
    def __init__(self) -> None:
        self.started = time.time()
        self.counts = {"predict_requests": 0, "tasks": 0, "task_failures": 0, "bad_requests": 0, "setup": 0,
                       "webhooks": 0}
        self.latencies: deque[float] = deque(maxlen=2000)
        self.images_s_total = 0.0
        self.lock = threading.Lock()

    def add(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + n

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            lat = sorted(self.latencies)
            pct = (lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 1)) if lat else (lambda q: None)
            return {**self.counts, "uptime_s": round(time.time() - self.started, 1),
                    "predict_latency_ms": {"p50": pct(0.5), "p95": pct(0.95), "p99": pct(0.99), "n": len(lat)},
                    "images_per_s_in_predict": round(self.counts["tasks"] / self.images_s_total, 2)
                    if self.images_s_total else None}
