"""Constrained decoding with llguidance: grammars compiled once, one matcher per row, a batched mask.

The backend protocol is small (vLLM v1's shape): :meth:`Grammars.compile` turns a
:class:`~blaze_ai.engines.requests.StructuredOutput` into a compiled grammar once per distinct
value (an LRU cache); :meth:`Grammars.matcher` gives each row its own matcher (a copy of the
compiled one) that accepts tokens, says when it is finished and can roll back; :meth:`Grammars.fill`
writes the next-token bitmask of every constrained row in one parallel call, and :func:`apply_bitmask`
applies it to the batch's logits in a few tensor operations.

llguidance was chosen by measurement over outlines-core and xgrammar: it compiles JSON Schemas,
regular expressions, choices and Lark grammars (and GBNF) with no dependencies, and costs a few
milliseconds per step at 32 rows; see ``benchmarks/results/grammar_backends.md``.
"""

from __future__ import annotations

import functools
import json
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import torch

from blaze_ai.engines.requests import StructuredOutput
from blaze_ai.errors import BadRequestError

#: Compiled grammars kept per engine (the least recently used one is dropped first).
CACHE_SIZE = 256
#: JSON layout: compact separators, no free whitespace (a model cannot pad forever), schema order.
JSON_OPTIONS: dict[str, Any] = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


def _llguidance() -> Any:
    import llguidance  # a dependency; imported here so that a model without grammars never loads it

    return llguidance


def grammar_text(spec: StructuredOutput) -> str:
    """llguidance's grammar for ``spec``; a malformed spec is a BadRequestError naming the problem."""
    matcher = _llguidance().LLMatcher
    if spec.kind == "json":
        try:
            return str(matcher.grammar_from_json_schema(spec.spec, defaults=JSON_OPTIONS))
        except ValueError as exc:
            raise BadRequestError(
                f"the JSON schema is not valid JSON: {exc}", param="response_format"
            ) from exc
    if spec.kind == "regex":
        return str(matcher.grammar_from_regex(spec.spec))
    if spec.kind == "choice":
        choices = json.loads(spec.spec)
        if not isinstance(choices, list) or not choices or not all(isinstance(c, str) for c in choices):
            raise BadRequestError("choice needs a non-empty list of strings", param="structured_outputs")
        return str(_llguidance().grammar_from("choice", spec.spec))
    return str(_llguidance().grammar_from("lark", spec.spec))


class Grammars:
    """Compiled grammars for one tokenizer, and the matchers and bitmasks of the rows using them."""

    def __init__(self, tokenizer: Any, vocab_size: int, eos_token_ids: tuple[int, ...]) -> None:
        self._hf_tokenizer = tokenizer
        self.vocab_size = vocab_size  # width of the model's logits (may exceed the tokenizer's vocabulary)
        self._eos = list(eos_token_ids)
        self._compiled: OrderedDict[StructuredOutput, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._executor: Any = None

    @functools.cached_property
    def tokenizer(self) -> Any:
        """llguidance's view of the tokenizer (built on first use: about 0.35 s for 49k tokens)."""
        from llguidance.hf import from_tokenizer

        return from_tokenizer(self._hf_tokenizer, n_vocab=self.vocab_size, eos_token=self._eos)

    def is_compiled(self, spec: StructuredOutput) -> bool:
        """Whether ``spec`` is in the cache (so :meth:`compile` returns at once)."""
        with self._lock:
            return spec in self._compiled

    def compile(self, spec: StructuredOutput) -> Any:
        """The compiled matcher template for ``spec`` (cached); BadRequestError if it does not compile."""
        with self._lock:
            if spec in self._compiled:
                self._compiled.move_to_end(spec)
                return self._compiled[spec]
        llg = _llguidance()
        matcher = llg.LLMatcher(self.tokenizer, grammar_text(spec), log_level=0)
        if matcher.is_error():
            raise BadRequestError(
                f"the {spec.kind} does not compile: {matcher.get_error()}", param=_param(spec)
            )
        with self._lock:
            self._compiled[spec] = matcher
            while len(self._compiled) > CACHE_SIZE:
                self._compiled.popitem(last=False)
        return matcher

    def matcher(self, spec: StructuredOutput) -> Any:
        """A fresh matcher for one row."""
        return self.compile(spec).deep_copy()

    def fill(self, matchers: list[Any]) -> Bitmask:
        """The next-token bitmask ``[len(matchers), ceil(vocab / 32)]`` (int32), filled in parallel."""
        # llguidance.numpy, not llguidance.torch: the latter compiles a kernel with torch.compile on import.
        from llguidance.numpy import fill_next_token_bitmask_par

        if self._executor is None:
            self._executor = _llguidance().LLExecutor()
        bitmask = np.full((len(matchers), (self.vocab_size + 31) // 32), -1, dtype=np.int32)
        fill_next_token_bitmask_par(self._executor, [(m, i) for i, m in enumerate(matchers)], bitmask)
        return bitmask


def _param(spec: StructuredOutput) -> str:
    return "response_format" if spec.kind == "json" else "structured_outputs"


def constrain(
    logits: torch.Tensor, rows: list[int], matchers: list[Any], greedy: list[bool], grammars: Grammars
) -> list[int]:
    """Set the logits of ``rows`` to -inf wherever their matchers forbid the token (in place).

    A greedy row whose most likely token its grammar allows needs no mask at all (the argmax of the
    masked row is that same token), so only the other rows' masks are computed and applied:
    inside a JSON string or a number, most greedy steps cost one ``validate_tokens`` call.
    Returns the rows that were masked.
    """
    need = [i for i, is_greedy in enumerate(greedy) if not is_greedy]
    quick = [i for i, is_greedy in enumerate(greedy) if is_greedy]
    if quick:
        best = logits.argmax(dim=-1).tolist()
        need += [i for i in quick if matchers[i].validate_tokens([best[rows[i]]]) != 1]
    if not need:
        return []
    need.sort()
    masked = [rows[i] for i in need]
    apply_bitmask(logits, masked, grammars.fill([matchers[i] for i in need]))
    return masked


Bitmask = np.ndarray[Any, np.dtype[np.int32]]


def apply_bitmask(logits: torch.Tensor, rows: list[int], bitmask: Bitmask) -> None:
    """Set the logits of ``rows`` to -inf wherever their bitmask row has a 0 bit (in place)."""
    vocab = logits.shape[-1]
    bits = np.unpackbits(bitmask.view(np.uint8), axis=1, bitorder="little")[:, :vocab]
    forbidden = torch.from_numpy(bits == 0).to(logits.device)
    if rows == list(range(logits.shape[0])):
        logits.masked_fill_(forbidden, float("-inf"))
        return
    for j, row in enumerate(rows):  # row views: no copy of the other rows
        logits[row].masked_fill_(forbidden[j], float("-inf"))


def accept(matcher: Any, token: int) -> bool:
    """Advance ``matcher`` by ``token``; return whether the grammar is complete (nothing may follow)."""
    matcher.consume_token(token)
    return bool(matcher.is_stopped())
