"""GPU reader fakes: stand-ins for exporter.gpu's readers (``read()`` and ``close()``)."""

from __future__ import annotations

from exporter.gpu import GpuSnapshot


class FixedGpuReader:
    """Hands out one snapshot forever, so repeated reads and scrapes agree."""

    def __init__(self, snapshot: GpuSnapshot) -> None:
        self.snapshot = snapshot

    def read(self) -> GpuSnapshot:
        return self.snapshot

    def close(self) -> None:
        pass
