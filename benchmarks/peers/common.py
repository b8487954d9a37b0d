"""What every peer server shares: the same model weights, batched ``generate``, OpenAI-shaped bodies.

Peers load the model through ``blaze_ai.engines.llm.load_model`` (the same folder, dtype and
tokenizer Blaze serves) and then use only Hugging Face ``model.generate``, as a user of that
framework would. Greedy decoding, left padding, generation stops at EOS.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from transformers.generation.streamers import BaseStreamer


@dataclass
class Output:
    """One finished completion: text, completion tokens, prompt tokens, finish reason."""

    text: str
    tokens: int
    prompt_tokens: int
    finish_reason: str


class Generator:
    """Batched greedy ``generate`` over one model, whole or token by token."""

    def __init__(self, source: str, dtype: str = "float32") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from blaze_ai.engines.llm import LLMConfig, load_model

        loaded = load_model(LLMConfig(source=source, device="cpu", dtype=dtype))
        self.model, self.tokenizer = loaded.model, loaded.tokenizer
        self.tokenizer.padding_side = "left"
        self.eos = set(loaded.eos_token_ids)
        self.pad = self.tokenizer.pad_token_id
        if self.pad is None:
            self.pad = next(iter(self.eos), 0)

    def _inputs(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True)
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def _kwargs(self, max_tokens: int) -> dict[str, Any]:
        return {"max_new_tokens": max_tokens, "do_sample": False, "pad_token_id": self.pad,
                "eos_token_id": sorted(self.eos) or None}  # fmt: skip

    def generate(self, prompts: list[str], max_tokens: int) -> list[Output]:
        """One ``model.generate`` call for the whole batch."""
        inputs = self._inputs(prompts)
        with torch.inference_mode():
            out = self.model.generate(**inputs, **self._kwargs(max_tokens))
        width = inputs["input_ids"].shape[1]
        prompt_lengths = inputs["attention_mask"].sum(-1).tolist()
        rows = zip(out, prompt_lengths, strict=True)
        return [self._output(row[width:].tolist(), n, max_tokens) for row, n in rows]

    def _output(self, ids: list[int], prompt_tokens: int, max_tokens: int) -> Output:
        cut = next((i for i, t in enumerate(ids) if t in self.eos), None)
        kept = ids if cut is None else ids[:cut]
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        return Output(text, len(kept), prompt_tokens, "stop" if cut is not None else "length")

    def stream(self, prompts: list[str], max_tokens: int) -> Iterator[list[str | None]]:
        """Per generated step, one text delta per row ("" while held back, None once the row ended)."""
        streamer = _StepStreamer()
        inputs = self._inputs(prompts)

        def work() -> None:
            try:
                with torch.inference_mode():
                    self.model.generate(**inputs, **self._kwargs(max_tokens), streamer=streamer)
            finally:
                streamer.end()

        threading.Thread(target=work, daemon=True).start()
        rows: list[list[int]] = [[] for _ in prompts]
        sent = [""] * len(prompts)
        done = [False] * len(prompts)
        for step in streamer:
            deltas: list[str | None] = []
            for i, token in enumerate(step):
                if done[i] or token in self.eos:
                    done[i] = True
                    deltas.append(None)
                    continue
                rows[i].append(token)
                text = self.tokenizer.decode(rows[i], skip_special_tokens=True)
                delta = "" if text.endswith("\ufffd") else text[len(sent[i]) :]
                sent[i] += delta
                deltas.append(delta)
            yield deltas


class _StepStreamer(BaseStreamer):
    """Receives each generate step's tokens (the first put is the prompt, skipped)."""

    def __init__(self) -> None:
        self._queue: queue.Queue[list[int] | None] = queue.Queue()
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self._queue.put(value.reshape(-1).tolist())

    def end(self) -> None:
        self._queue.put(None)

    def __iter__(self) -> Iterator[list[int]]:
        while (item := self._queue.get()) is not None:
            yield item


def completion(model: str, out: Output) -> dict[str, Any]:
    """A whole ``text_completion`` body."""
    return {
        "id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
        "model": model, "choices": [{"index": 0, "text": out.text, "finish_reason": out.finish_reason}],
        "usage": usage(out.prompt_tokens, out.tokens),
    }  # fmt: skip


def usage(prompt_tokens: int, tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": tokens,
        "total_tokens": prompt_tokens + tokens,
    }


def sse(model: str, text: str | None = None, finish: str | None = None, tokens: int | None = None) -> bytes:
    """One SSE chunk: a text delta, a finish, or (``tokens`` given) the usage chunk."""
    body: dict[str, Any] = {"id": "cmpl-peer", "object": "text_completion", "created": int(time.time()),
                            "model": model, "choices": []}  # fmt: skip
    if tokens is not None:
        body["usage"] = usage(0, tokens)
    else:
        body["choices"] = [{"index": 0, "text": text or "", "finish_reason": finish}]
    return b"data: " + json.dumps(body).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"
