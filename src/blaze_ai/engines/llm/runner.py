"""Model runners: the KV cache of the running rows and the forward passes over it.

:class:`EngineCore` drives one runner and never touches keys or values itself:

- :class:`PagedRunner` runs the loaded modules over a paged pool allocated at start
  (:mod:`.forward`, :mod:`.paged`); its decode step has static shapes, and on CUDA it is replayed
  from CUDA graphs (:mod:`.graphs`).
- :class:`HFRunner` runs Hugging Face's own forward over the growing left-padded cache of
  :mod:`.batch`: every architecture transformers knows.

Both keep the running rows in one order: ``prefill`` appends rows, ``decode`` feeds one token
per row, ``drop`` removes finished rows and returns each remaining row's old index.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any, Protocol

import torch

from blaze_ai.engines.llm import batch as kv
from blaze_ai.engines.llm.config import LLMConfig
from blaze_ai.engines.llm.forward import PagedDecoder, Shape, unsupported_reason
from blaze_ai.engines.llm.graphs import DecodeGraphs
from blaze_ai.engines.llm.loading import LoadedModel
from blaze_ai.engines.llm.paged import SCRATCH_BLOCK, PagedCache
from blaze_ai.errors import ConfigError

log = logging.getLogger(__name__)

#: Tokens per block of the paged pool.
BLOCK_SIZE = 16


class Runner(Protocol):
    """What the engine core needs from a model runner."""

    name: str
    #: What one more prefill forward pass costs in prompt tokens; None until warmed up.
    prefill_overhead_tokens: float | None

    def prefill(
        self, prompts: list[list[int]], repeats: list[int], reserve: list[int], *, keep_all: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """Append rows for ``prompts`` (``repeats[i]`` rows each, room for ``reserve[i]`` tokens).

        Returns the next-token logits of the new rows ``[rows, vocab]`` and, with ``keep_all``, each
        prompt's logits at every one of its positions ``[len(prompt), vocab]``.
        """

    def decode(self, tokens: list[int]) -> torch.Tensor:
        """Feed one token per running row; return next-token logits ``[rows, vocab]``."""

    def drop(self, finished: list[int]) -> list[int]:
        """Remove rows ``finished``; return, for each remaining row in its new place, its old index."""

    def clear(self) -> None:
        """Remove every row."""

    def warm_up(self) -> dict[str, Any]:
        """Prepare for serving (measure, capture graphs); return what to report."""


def make_runner(loaded: LoadedModel, config: LLMConfig, max_context: int) -> Runner:
    """The runner ``config.decode_path`` asks for: ``paged``, ``hf``, or ``auto`` (paged where supported).

    On CUDA the paged runner replays its decode steps from CUDA graphs unless ``config.cuda_graphs``
    is off.
    """
    path = config.decode_path
    reason = unsupported_reason(loaded.model, max_context)
    if path == "hf" or (path == "auto" and reason is not None):
        if path == "auto":
            log.info("%s decodes with the Hugging Face forward: %s", loaded.name, reason)
        return HFRunner(loaded, config.max_batch_size)
    if reason is not None:
        raise ConfigError(f"decode_path=paged cannot run this model: {reason}", param="decode_path")
    runner = PagedRunner(loaded, config.max_batch_size, config.max_tokens_in_flight, max_context)
    if loaded.device.type == "cuda" and config.cuda_graphs:
        runner.use_graphs(min(max_context, config.cuda_graph_max_context))
    elif config.compile and loaded.device.type == "cpu":
        runner.use_compile()
    elif config.compile:
        log.info("compile is for CPU; %s on %s replays CUDA graphs instead", loaded.name, loaded.device)
    return runner


def kv_pool_tokens(config: LLMConfig) -> int:
    """Tokens the KV cache is sized for: the budget plus a partly used last block per row, plus scratch."""
    return config.max_tokens_in_flight + (config.max_batch_size + 1) * BLOCK_SIZE


class HFRunner:
    """Hugging Face's forward over :mod:`.batch`'s left-padded cache."""

    name = "hf"

    def __init__(self, loaded: LoadedModel, max_rows: int) -> None:
        self.model = loaded.model
        self.max_rows = max_rows
        self.batch: kv.KVBatch | None = None
        self.prefill_overhead_tokens: float | None = None

    def prefill(
        self, prompts: list[list[int]], repeats: list[int], reserve: list[int], *, keep_all: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        del reserve  # the cache grows as needed
        logits, new, full = kv.prefill(self.model, prompts, repeats, self.max_rows, keep_all=keep_all)
        self.batch = new if self.batch is None else kv.merge(self.batch, new)
        if full is None:
            return logits, None
        width = full.shape[1]
        return logits, [full[i, width - len(p) :] for i, p in enumerate(prompts)]

    def decode(self, tokens: list[int]) -> torch.Tensor:
        assert self.batch is not None
        return kv.decode(self.model, self.batch, tokens)

    def drop(self, finished: list[int]) -> list[int]:
        assert self.batch is not None
        if len(finished) == self.batch.rows:
            self.batch = None
            return []
        return self.batch.drop(finished)

    def clear(self) -> None:
        self.batch = None

    def warm_up(self) -> dict[str, Any]:
        self.prefill_overhead_tokens = kv.forward_overhead_tokens(self.model)
        return {"decode_path": self.name}


class PagedRunner:
    """The paged forward; decode steps replayed from CUDA graphs on CUDA."""

    name = "paged"

    def __init__(self, loaded: LoadedModel, max_rows: int, max_tokens: int, max_context: int) -> None:
        self.device = loaded.device
        self.cache = PagedCache(
            Shape.of(loaded.model),
            tokens=max_tokens,
            max_rows=max_rows,
            max_context=max_context,
            block_size=BLOCK_SIZE,
            device=loaded.device,
            dtype=loaded.dtype if loaded.dtype.is_floating_point else torch.float32,
        )
        self.decoder = PagedDecoder(loaded.model, self.cache.keys, self.cache.values, BLOCK_SIZE)
        self.graphs: DecodeGraphs | None = None
        self._compiled: Callable[..., torch.Tensor] | None = None
        self.prefill_overhead_tokens: float | None = None
        self.max_rows = max_rows

    def use_graphs(self, max_context: int) -> None:
        """Replay decode steps from CUDA graphs for rows of up to ``max_context`` tokens."""
        blocks = min(self.cache.blocks_per_row, math.ceil(max_context / BLOCK_SIZE))
        self.graphs = DecodeGraphs(self.decoder, self.max_rows, blocks, self.device)

    def use_compile(self) -> None:
        """Run decode steps through torch.compile (compiled once, at warm-up, for every shape)."""
        self._compiled = torch.compile(self.decoder.decode, dynamic=True, options={"freezing": True})

    def prefill(
        self, prompts: list[list[int]], repeats: list[int], reserve: list[int], *, keep_all: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        cache = self.cache
        width = max(len(p) for p in prompts)
        ids = torch.zeros((len(prompts), width), dtype=torch.long)
        slots = torch.full((len(prompts), width), SCRATCH_BLOCK * BLOCK_SIZE, dtype=torch.long)
        firsts = []
        for i, prompt in enumerate(prompts):
            first = cache.add_row(reserve[i])
            for _ in range(repeats[i] - 1):
                cache.add_row(reserve[i])
            ids[i, : len(prompt)] = torch.tensor(prompt)
            slots[i, : len(prompt)] = cache.slots(first, 0, len(prompt))
            firsts.append(first)
        lengths = torch.tensor([len(p) for p in prompts])
        out = self.decoder.prefill(
            ids.to(self.device), lengths.to(self.device), slots.to(self.device), keep_all=keep_all
        )
        for first, prompt, count in zip(firsts, prompts, repeats, strict=True):
            cache.lengths[first] = len(prompt)
            for row in range(first + 1, first + count):
                cache.copy_prefix(first, row, len(prompt))
        full = None
        if keep_all:
            full = [out[i, : len(p)] for i, p in enumerate(prompts)]
            out = out[torch.arange(len(prompts), device=out.device), lengths.to(out.device) - 1]
        if any(r != 1 for r in repeats):
            index = torch.repeat_interleave(torch.arange(len(prompts)), torch.tensor(repeats))
            out = out.index_select(0, index.to(out.device))
        return out, full

    def decode(self, tokens: list[int]) -> torch.Tensor:
        cache = self.cache
        rows = cache.rows
        positions = torch.tensor(cache.lengths)
        row_index = torch.arange(rows)
        blocks = cache.tables[row_index, positions // BLOCK_SIZE]
        slots = blocks * BLOCK_SIZE + positions % BLOCK_SIZE
        ids = torch.tensor(tokens)
        needed = int(positions.max()) // BLOCK_SIZE + 1
        cache.lengths = [n + 1 for n in cache.lengths]
        if self.graphs is not None:
            logits = self.graphs.run(ids, positions, slots, cache.tables[:rows], needed)
            if logits is not None:
                return logits
        if self._compiled is not None:
            return self._compiled_decode(ids, positions, slots, cache.tables[:rows], needed)
        device = self.device
        return self.decoder.decode(
            ids.to(device), positions.to(device), slots.to(device), cache.tables[:rows, :needed].to(device)
        )

    def _compiled_decode(
        self,
        ids: torch.Tensor,
        positions: torch.Tensor,
        slots: torch.Tensor,
        tables: torch.Tensor,
        blocks: int,
        *,
        mark_dynamic: bool = False,
    ) -> torch.Tensor:
        """The compiled step, padded to at least 2 rows and 2 blocks.

        Sizes 0 and 1 are specialised by the compiler: a lone request or a first block would
        otherwise compile the step again (minutes) in the middle of serving. Padded rows write
        and read the scratch block.
        """
        assert self._compiled is not None
        count, rows, width = len(ids), max(2, len(ids)), max(2, blocks)
        vectors = [torch.zeros(rows, dtype=torch.long) for _ in range(3)]
        for padded, values in zip(vectors, (ids, positions, slots), strict=True):
            padded[:count] = values
        table = torch.zeros((rows, width), dtype=torch.long)
        table[:count, :blocks] = tables[:, :blocks]
        if mark_dynamic:  # compile once for every number of rows and blocks
            for tensor in vectors:
                torch._dynamo.mark_dynamic(tensor, 0)
            torch._dynamo.mark_dynamic(table, 0)
            torch._dynamo.mark_dynamic(table, 1)
        return self._compiled(*vectors, table)[:count]

    def drop(self, finished: list[int]) -> list[int]:
        return self.cache.drop(finished)

    def clear(self) -> None:
        self.cache.clear()

    def warm_up(self) -> dict[str, Any]:
        try:
            self.prefill_overhead_tokens = kv.forward_overhead_tokens_of(
                self._prefill_seconds, rows=min(8, self.max_rows)
            )
        finally:
            self.clear()
        report: dict[str, Any] = {"decode_path": self.name, "kv_pool_bytes": self.cache.bytes()}
        if self._compiled is not None:
            started = time.monotonic()
            empty = torch.zeros(0, dtype=torch.long)
            self._compiled_decode(
                empty, empty, empty, torch.zeros((0, 3), dtype=torch.long), 3, mark_dynamic=True
            )
            report["compile_s"] = round(time.monotonic() - started, 1)
        if self.graphs is not None:
            started = time.monotonic()
            try:
                report.update(self.graphs.capture())
            except Exception:
                self.graphs = None  # a partial capture is never replayed: decode eagerly
                raise
            report["graph_capture_s"] = round(time.monotonic() - started, 2)
        return report

    def _prefill_seconds(self, prompts: list[list[int]]) -> float:
        start = time.perf_counter()
        self.prefill(prompts, [1] * len(prompts), [len(p) for p in prompts])
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.clear()
        return time.perf_counter() - start
