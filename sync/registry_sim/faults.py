"""Fault injection for the reference registry, deterministic with a seed.

Each request to the FHIR endpoints draws one outcome from a ``random.Random(seed)`` under a
lock, so a given sequence of requests always meets the same faults:

- ``error``: HTTP 500 or 503 (half each), nothing stored;
- ``throttle``: HTTP 429 with ``Retry-After: <retry_after_s>``, nothing stored;
- ``reset``: the request is read, then the TCP connection is reset (RST), nothing stored;
- ``drop``: the request is processed and committed, then the connection is closed without
  an answer: the lost acknowledgement;
- ``latency_ms``: each request waits a uniform time in ``[0, latency_ms]`` first.

``script`` forces the outcomes of the next requests, in order (``ok``, ``500``, ``503``,
``429``, ``reset``, ``drop``), before the rates apply again.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass, field

OUTCOMES = ("ok", "500", "503", "429", "reset", "drop")


@dataclass(frozen=True)
class Faults:
    seed: int = 0
    error_rate: float = 0.0
    throttle_rate: float = 0.0
    reset_rate: float = 0.0
    drop_rate: float = 0.0
    retry_after_s: int = 1
    latency_ms: float = 0.0
    script: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        rates = (self.error_rate, self.throttle_rate, self.reset_rate, self.drop_rate)
        if any(r < 0 or r > 1 for r in rates) or sum(rates) > 1:
            raise ValueError("fault rates must be in [0, 1] and add up to at most 1")
        if self.retry_after_s < 0 or self.latency_ms < 0:
            raise ValueError("retry_after_s and latency_ms must be >= 0")
        bad = [s for s in self.script if s not in OUTCOMES]
        if bad:
            raise ValueError(f"unknown scripted outcome(s) {bad}: expected {OUTCOMES}")

    @property
    def active(self) -> bool:
        return bool(self.script) or self.latency_ms > 0 or any(
            (self.error_rate, self.throttle_rate, self.reset_rate, self.drop_rate))

    @classmethod
    def from_dict(cls, data: dict) -> Faults:
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        if "script" in values:
            values["script"] = tuple(values["script"])
        return cls(**values)


@dataclass(frozen=True)
class Decision:
    outcome: str
    latency_s: float = 0.0


@dataclass
class FaultPlan:
    faults: Faults = field(default_factory=Faults)
    counts: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(self.faults.seed)  # noqa: S311 (reproducible faults)
        self._script = list(self.faults.script)

    def replace(self, faults: Faults) -> None:
        with self._lock:
            self.faults = faults
            self._rng = random.Random(faults.seed)  # noqa: S311
            self._script = list(faults.script)

    def decide(self) -> Decision:
        with self._lock:
            f = self.faults
            latency = self._rng.uniform(0, f.latency_ms) / 1000 if f.latency_ms else 0.0
            if self._script:
                outcome = self._script.pop(0)
            else:
                r = self._rng.random()
                edges = ((f.error_rate / 2, "500"), (f.error_rate, "503"),
                         (f.error_rate + f.throttle_rate, "429"),
                         (f.error_rate + f.throttle_rate + f.reset_rate, "reset"),
                         (f.error_rate + f.throttle_rate + f.reset_rate + f.drop_rate, "drop"))
                outcome = next((name for edge, name in edges if r < edge), "ok")
            self.counts[outcome] += 1
            return Decision(outcome, latency)
