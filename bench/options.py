"""What one run of the benchmark does: its stages and sizes, as ``twinmon bench`` passes them to
``bench.pipeline.run``. The standard library only, so that the command line can read the defaults and the stage
names without importing the Kafka and Redis clients."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

STAGES = ("throughput", "latency", "memory", "scale")


@dataclass(frozen=True)
class BenchOptions:
    stages: tuple[str, ...] = STAGES
    """The stages to run, of ``STAGES``; run in ``STAGES`` order whatever the order here."""
    patients: int = 10_000
    """Simulated patients of the throughput and scale-out stages."""
    events: int = 200_000
    """Throughput stage events."""
    partitions: int = 8
    rates: tuple[int, ...] = (5000, 15000)
    """Offered loads of the latency stage, events/s (each is also its number of patients)."""
    latency_seconds: float = 45.0
    twins: int = 100_000
    """Twins for memory and recovery."""
    scale_events: int = 100_000
    bootstrap: str | None = None
    """Use this Kafka instead of starting one from deploy/local (with ``redis_url``)."""
    redis_url: str | None = None
    json: Path = Path("bench-results.json")

    def __post_init__(self) -> None:
        unknown = sorted(set(self.stages) - set(STAGES))
        if unknown:
            raise ValueError(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}")
        if not self.stages:
            raise ValueError(f"no stage to run; choose from {', '.join(STAGES)}")
        sizes = {"patients": self.patients, "events": self.events, "partitions": self.partitions,
                 "twins": self.twins, "scale_events": self.scale_events}
        for name, value in sizes.items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")
        if not self.rates or min(self.rates) < 1:
            raise ValueError(f"rates must be one or more loads of at least 1 event/s, not {list(self.rates)}")
        if not self.latency_seconds > 0:
            raise ValueError(f"latency_seconds must be positive, not {self.latency_seconds}")
        if (self.bootstrap is None) != (self.redis_url is None):
            raise ValueError("give both --bootstrap and --redis-url, or neither (then the bench starts its own)")

    def quick(self) -> BenchOptions:
        """``--quick``: the same run at the sizes of a few minutes (they replace those given or defaulted)."""
        return replace(self, events=60_000, latency_seconds=40.0, twins=20_000, scale_events=40_000)
