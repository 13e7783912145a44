"""GPU reader fakes: stand-ins for exporter.gpu's readers (read, read_energy, close)."""

from __future__ import annotations

from exporter.gpu import GpuEnergy, GpuSnapshot


class FixedGpuReader:
    """Hands out one snapshot forever, so repeated reads and scrapes agree."""

    def __init__(self, snapshot: GpuSnapshot) -> None:
        self.snapshot = snapshot

    def read(self) -> GpuSnapshot:
        return self.snapshot

    def read_energy(self) -> tuple[GpuEnergy, ...]:
        return ()  # no energy counter: the series stay absent

    def close(self) -> None:
        pass
