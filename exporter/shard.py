"""Sharding: which replica of a fleet of exporters probes which target.

With `shard: {count: N, index: I}` (or `--shard.count N --shard.index I`), a replica probes
only the targets whose name hashes to its index:

    shard_of(name, N) = int.from_bytes(sha256(name.encode("utf-8")).digest()[:8], "big") % N

The first 8 bytes of the SHA-256 digest of the target's name (UTF-8), read as a big-endian
unsigned integer, modulo the shard count. It depends on nothing but the name and N: not on
Python's per-process hash() seed, the order of the targets, the other targets or the host, so
every replica agrees and a target never moves while N stays the same. (Changing N moves most
targets: this is a modulo, not a consistent hash.) Unsharded is count 1, index 0.
"""

from __future__ import annotations

import hashlib

from pydantic import Field, ValidationInfo, field_validator

from exporter.validation import StrictModel


def shard_of(name: str, count: int) -> int:
    """The shard index, in [0, count), that owns the target called `name`."""
    if count < 1:
        raise ValueError(f"the shard count must be at least 1, not {count}")
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


class ShardConfig(StrictModel):
    """This replica's share of the targets: the `shard` key of the configuration."""

    count: int = Field(default=1, ge=1)
    index: int = Field(default=0, ge=0)

    @field_validator("index")
    @classmethod
    def _below_count(cls, index: int, info: ValidationInfo) -> int:
        count = info.data.get("count")  # absent when count itself is broken
        if isinstance(count, int) and index >= count:
            raise ValueError(
                f"{index} must be below shard.count ({count}): indexes run from 0 to count - 1"
            )
        return index

    def owns(self, name: str) -> bool:
        """Whether the target called `name` is this replica's to probe."""
        return shard_of(name, self.count) == self.index


def with_flags(shard: ShardConfig, count: int | None, index: int | None) -> ShardConfig:
    """The configuration's shard with the command line's flags over it.

    Each flag was range-checked by the parser; only the pair can still be wrong. The message
    names the index's flag if it was given, else the count's, and where each value came from.
    """
    if count is None and index is None:
        return shard
    merged_count = shard.count if count is None else count
    merged_index = shard.index if index is None else index
    if merged_index >= merged_count:
        index_from = "--shard.index" if index is not None else "shard.index of the configuration"
        count_from = "--shard.count" if count is not None else "shard.count of the configuration"
        flag = "--shard.index" if index is not None else "--shard.count"
        raise ValueError(
            f"{flag}: the shard index {merged_index} ({index_from}) must be below the shard "
            f"count {merged_count} ({count_from}): indexes run from 0 to count - 1"
        )
    return ShardConfig(count=merged_count, index=merged_index)
