"""The paged decode step captured in CUDA graphs, one per (rows, columns) bucket.

A graph replays every kernel of a step with one launch, so a step costs what its kernels cost,
not what Python spends launching them. Graphs need fixed shapes and fixed addresses: inputs go
through static buffers, and each graph is captured for a bucket of rows (1, 2, 4, 8, then steps
of 16 up to the engine's batch size) and of attended columns (powers of two from 256 up to the
graph context limit). A step replays the smallest bucket that holds it; padded rows read and
write the pool's scratch block, and their logits are never looked at. A step wider than the
largest captured bucket runs eagerly over the same static-shape forward.

Captures happen at start (from the largest bucket down, sharing one memory pool), so their time
and memory are paid before the engine reports ready.
"""

from __future__ import annotations

import bisect
from typing import Any

import torch

from blaze_ai.engines.llm.forward import PagedDecoder

#: Narrowest attended width captured, in tokens (narrower steps replay this bucket).
MIN_COLUMNS = 256


def row_buckets(max_rows: int) -> list[int]:
    """1, 2, 4, 8, then steps of 16 up to ``max_rows`` (which is always a bucket)."""
    small = [b for b in (1, 2, 4, 8) if b < max_rows]
    return [*small, *range(16, max_rows, 16), max_rows]


def block_buckets(max_blocks: int, block_size: int) -> list[int]:
    """Widths in blocks: powers of two from :data:`MIN_COLUMNS` tokens, ending at ``max_blocks``."""
    widths, blocks = [], max(1, MIN_COLUMNS // block_size)
    while blocks < max_blocks:
        widths.append(blocks)
        blocks *= 2
    return [*widths, max_blocks]


class DecodeGraphs:
    """Static input buffers and the captured decode graphs that read them."""

    def __init__(self, decoder: PagedDecoder, max_rows: int, max_blocks: int, device: torch.device) -> None:
        self.decoder = decoder
        self.device = device
        self.rows = row_buckets(max_rows)
        self.blocks = block_buckets(max_blocks, decoder.block_size)
        # ids, positions, slots per row; zeros point into the scratch block.
        self._vectors = torch.zeros((3, max_rows), dtype=torch.long, device=device)
        self._tables = torch.zeros((max_rows, max_blocks), dtype=torch.long, device=device)
        self._graphs: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}

    def capture(self) -> dict[str, Any]:
        """Capture every bucket; return the count and the memory they hold."""
        before = torch.cuda.memory_allocated(self.device)
        pool = torch.cuda.graph_pool_handle()
        for blocks in reversed(self.blocks):
            self._warm_up(self.rows[-1], blocks)
            for rows in reversed(self.rows):
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
                    logits = self._step(rows, blocks)
                self._graphs[rows, blocks] = (graph, logits)
        torch.cuda.synchronize(self.device)
        return {
            "cuda_graphs": len(self._graphs),
            "cuda_graph_rows": self.rows[-1],
            "cuda_graph_context": self.blocks[-1] * self.decoder.block_size,
            "cuda_graph_bytes": torch.cuda.memory_allocated(self.device) - before,
        }

    def run(
        self,
        ids: torch.Tensor,
        positions: torch.Tensor,
        slots: torch.Tensor,
        tables: torch.Tensor,
        blocks: int,
    ) -> torch.Tensor | None:
        """Replay the smallest bucket holding ``len(ids)`` rows and ``blocks`` blocks; None if none does.

        Inputs are host tensors: ``tables`` is ``[rows, blocks_per_row]`` (its first columns are read).
        """
        count = len(ids)
        row_at = bisect.bisect_left(self.rows, count)
        block_at = bisect.bisect_left(self.blocks, blocks)
        if row_at == len(self.rows) or block_at == len(self.blocks) or not self._graphs:
            return None
        rows, width = self.rows[row_at], self.blocks[block_at]
        graph, logits = self._graphs[rows, width]
        host = torch.zeros((3, rows), dtype=torch.long)
        host[0, :count], host[1, :count], host[2, :count] = ids, positions, slots
        self._vectors[:, :rows].copy_(host, non_blocking=True)
        table = torch.zeros((rows, width), dtype=torch.long)
        table[:count] = tables[:, :width]
        self._tables[:rows, :width].copy_(table, non_blocking=True)
        graph.replay()
        return logits[:count]

    def _step(self, rows: int, blocks: int) -> torch.Tensor:
        ids, positions, slots = self._vectors[:, :rows]
        return self.decoder.decode(ids, positions, slots, self._tables[:rows, :blocks])

    def _warm_up(self, rows: int, blocks: int) -> None:
        """Run a step eagerly on a side stream, as capture requires (kernel selection, workspaces)."""
        stream = torch.cuda.Stream(self.device)  # type: ignore[no-untyped-call]
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            self._step(rows, blocks)
        torch.cuda.current_stream(self.device).wait_stream(stream)
