"""Paged KV storage, allocated once at start, and the block tables of the running rows.

The pool holds ``blocks x block_size`` token slots per layer (keys and values). Block 0 is
scratch: padding positions and the padded rows of a CUDA-graph bucket write there and read from
there, so every index a step uses is valid whatever the batch holds. A row gets all the blocks
of its prompt plus ``max_tokens`` when it joins (the scheduler already admits only what fits in
``max_tokens_in_flight``, so allocation cannot fail midway) and gives them back when it ends.

Rows are kept in the running batch's order: dropping rows moves block-table rows (a few
integers), never keys or values.
"""

from __future__ import annotations

import math

import torch

from blaze_ai.engines.llm.forward import Shape
from blaze_ai.errors import OverloadedError

SCRATCH_BLOCK = 0


class PagedCache:
    """Key and value pools plus the block table of each running row (host side)."""

    def __init__(
        self,
        shape: Shape,
        *,
        tokens: int,
        max_rows: int,
        max_context: int,
        block_size: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        self.block_size = block_size
        self.blocks_per_row = math.ceil(max_context / block_size)
        # No more than every row at full context; every row may waste part of its last block.
        tokens = min(tokens, max_rows * self.blocks_per_row * block_size)
        blocks = 1 + math.ceil(tokens / block_size) + max_rows
        size = (blocks * block_size, shape.kv_heads, shape.head_dim)
        self.keys = [torch.zeros(size, device=device, dtype=dtype) for _ in range(shape.layers)]
        self.values = [torch.zeros(size, device=device, dtype=dtype) for _ in range(shape.layers)]
        self._free = list(range(blocks - 1, SCRATCH_BLOCK, -1))  # pop() hands out low blocks first
        self.tables = torch.zeros((max_rows, self.blocks_per_row), dtype=torch.long)  # running rows
        self.lengths: list[int] = []  # tokens stored per running row
        self._owned: list[list[int]] = []  # blocks of each running row

    @property
    def rows(self) -> int:
        """Running rows."""
        return len(self.lengths)

    @property
    def free_blocks(self) -> int:
        """Blocks not held by any row."""
        return len(self._free)

    def bytes(self) -> int:
        """Bytes of the key and value pools."""
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)

    def add_row(self, tokens: int) -> int:
        """Append a row with room for ``tokens`` tokens; return its index."""
        need = math.ceil(tokens / self.block_size)
        if need > len(self._free) or need > self.blocks_per_row:
            raise OverloadedError(f"the KV pool has {len(self._free)} free blocks, a row needs {need}")
        blocks = [self._free.pop() for _ in range(need)]
        row = self.rows
        self.tables[row, :need] = torch.tensor(blocks)
        self.tables[row, need:] = SCRATCH_BLOCK
        self._owned.append(blocks)
        self.lengths.append(0)
        return row

    def slots(self, row: int, start: int, count: int) -> torch.Tensor:
        """Pool slots of positions ``start .. start + count`` of ``row``."""
        positions = torch.arange(start, start + count)
        blocks = self.tables[row].index_select(0, positions // self.block_size)
        return blocks * self.block_size + positions % self.block_size

    def copy_prefix(self, src: int, dst: int, count: int) -> None:
        """Copy the first ``count`` tokens of row ``src`` into row ``dst`` (the ``n`` choices of a prompt)."""
        source, target = self.slots(src, 0, count), self.slots(dst, 0, count)
        device = self.keys[0].device
        source, target = source.to(device), target.to(device)
        for pool in self.keys + self.values:
            pool.index_copy_(0, target, pool.index_select(0, source))
        self.lengths[dst] = count

    def drop(self, finished: list[int]) -> list[int]:
        """Free rows ``finished``; each hole takes the last row. Return each remaining row's old index."""
        order = list(range(self.rows))
        for hole in sorted(finished, reverse=True):
            self._free.extend(self._owned[hole])
            order[hole] = order[-1]
            order.pop()
        index = torch.tensor(order, dtype=torch.long)
        self.tables[: len(order)] = self.tables.index_select(0, index)
        self.lengths = [self.lengths[i] for i in order]
        self._owned = [self._owned[i] for i in order]
        return order

    def clear(self) -> None:
        """Free every row."""
        self.drop(list(range(self.rows)))
