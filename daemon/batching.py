"""Splits one poll's readings into inference waves: a stream appears at most once per wave, in order.

>>> waves(["a", "b", "a", "c", "a"], max_batch=8)
[[0, 1, 3], [2], [4]]
>>> waves(["a", "b", "c"], max_batch=2)
[[0, 1], [2]]
"""

from __future__ import annotations


def waves(streams: list[str], max_batch: int) -> list[list[int]]:
    """Indices into ``streams`` grouped into waves.

    The k-th reading of every stream goes to wave k (split into chunks of ``max_batch``), so a
    stream's readings are applied in their original order and never merged into one step.
    """
    by_rank: list[list[int]] = []
    seen: dict[str, int] = {}
    for index, stream in enumerate(streams):
        rank = seen.get(stream, 0)
        seen[stream] = rank + 1
        if rank == len(by_rank):
            by_rank.append([])
        by_rank[rank].append(index)
    return [wave[i : i + max_batch] for wave in by_rank for i in range(0, len(wave), max_batch)]
