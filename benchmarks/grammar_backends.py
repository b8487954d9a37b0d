"""Constrained-decoding backends for structured outputs: llguidance vs outlines-core vs xgrammar.

Every backend gets the same tokenizer (SmolLM2-135M-Instruct's, 49,152 tokens), the same JSON
schemas (``benchmarks/data/schemas/*.json``) and the same sampler. No model runs: logits are seeded
random numbers, so the grammar library is the only moving part. Measured per backend:

1. set-up: wrapping the tokenizer once (llguidance ``hf.from_tokenizer``; outlines-core a
   ``Vocabulary`` of token bytes; xgrammar ``TokenizerInfo.from_huggingface`` + ``GrammarCompiler``),
   median of 3;
2. compile: each schema to a reusable grammar (llguidance ``LLMatcher``; outlines-core
   ``build_regex_from_schema`` + ``Index``, in a forked child killed after ``--compile-timeout``
   because some schemas make its DFA explode; xgrammar ``compile_json_schema``), and "first mask":
   compile + a new matcher + its first token mask (llguidance builds parts lazily);
3. decode step at ``--rows`` (32) concurrent matchers cycling through the schemas every backend
   compiles: fill a [rows, ceil(vocab/32)] int32 bitmask (llguidance ``fill_next_token_bitmask_par``
   on an ``LLExecutor``, xgrammar ``BatchGrammarMatcher``, outlines-core ``Guide.write_mask_into`` row
   by row: it has no batch API), mask float32 random logits (one shared torch kernel), argmax,
   advance every matcher (llguidance ``consume_token_par``, xgrammar ``batch_accept_token``); a row
   that ends restarts with a fresh matcher. p50/p90/p99 of the step and of its parts, for each
   library thread count in ``--threads``; the backends take turns so outside load hits all of them;
   then each schema alone (8 rows) for the mask cost per row and step;
4. coverage: which schemas compile, raise or warn, then ``--samples`` outputs per compiled schema
   sampled under the constraint and checked with ``jsonschema`` (formats asserted where jsonschema
   can: date, date-time with rfc3339-validator, email, uuid): the share that parses and validates
   is the real coverage; a backend that compiles a schema and lets invalid output through has
   ignored part of it.

Sampling, the same for every backend: argmax of masked N(0, 1) logits; from ``--close-after``
tokens on, tokens containing ``"``, ``]``, ``}`` or ``@`` get ``--close-bias`` added (else random
strings and e-mail local parts run for hundreds of tokens); from ``--force-eos-after`` tokens on,
EOS is taken as soon as the mask allows it; at ``--max-tokens`` the output counts as truncated.
JSON is compact everywhere (llguidance ``whitespace_flexible=False``, outlines-core
``whitespace_pattern=""``, xgrammar ``any_whitespace=False``); other options are each library's
defaults (llguidance refuses unknown keywords, xgrammar ``strict_mode=True``).

Run it from a virtualenv that has the three libraries (not the project's)::

    python3 -m venv /tmp/gbench && /tmp/gbench/bin/pip install torch==2.13.0
    /tmp/gbench/bin/pip install 'transformers>=5.20,<6' llguidance==1.9.1 outlines-core==0.2.14 \\
        xgrammar jsonschema rfc3339-validator
    /tmp/gbench/bin/python benchmarks/grammar_backends.py --json /tmp/grammar_backends.json

``--tokenizer DIR`` defaults to Blaze's ``builtin:smollm2-135m`` folder, found through ``blaze_ai``
when importable, else through the project's ``.venv``. A backend that cannot be imported is reported
as unavailable and the others still run. Tables go to stdout (Markdown), progress to stderr.
"""

from __future__ import annotations

import abc
import argparse
import contextlib
import dataclasses
import datetime
import importlib.metadata
import itertools
import json
import multiprocessing
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from jsonschema import Draft202012Validator

REPO = Path(__file__).resolve().parents[1]
SCHEMA_DIR = REPO / "benchmarks" / "data" / "schemas"
BUILTIN_TOKENIZER = "builtin:smollm2-135m"
CLOSING_CHARS = b'"]}@'
SETUP_REPEATS = 3
PACKAGES = ("llguidance", "outlines-core", "xgrammar", "torch", "transformers", "jsonschema")
Schema = dict[str, Any]


class CompileError(Exception):
    """A backend refused a schema."""


# ----------------------------------------------------------------------------- backends


class Backend(abc.ABC):
    """One constrained-decoding library behind the calls the benchmark makes."""

    name: str
    package: str

    def __init__(self, tokenizer: Any, token_bytes: list[bytes]) -> None:
        self.tokenizer = tokenizer
        self.token_bytes = token_bytes
        self.eos: int = tokenizer.eos_token_id
        self.vocab = len(token_bytes)

    @abc.abstractmethod
    def setup(self, threads: int) -> None:
        """Wrap the tokenizer (timed as set-up) and make thread pools of ``threads`` workers."""

    @abc.abstractmethod
    def set_threads(self, threads: int) -> None:
        """Use ``threads`` workers for batched mask filling from now on."""

    @abc.abstractmethod
    def compile(self, schema: Schema) -> Any:
        """A reusable compiled grammar for ``schema``; raises on refusal."""

    def compile_timed(self, schema: Schema, limit_s: float) -> tuple[Any, float]:
        """``compile(schema)`` and the seconds it took (``limit_s`` applies where a backend can hang)."""
        start = time.perf_counter()
        compiled = self.compile(schema)
        return compiled, time.perf_counter() - start

    @abc.abstractmethod
    def new_matcher(self, compiled: Any) -> Any:
        """A fresh matcher in the grammar's start state."""

    @abc.abstractmethod
    def fill(self, matchers: Sequence[Any], rows: Sequence[int], bitmask: torch.Tensor) -> None:
        """Write each matcher's allowed-token bitmask into ``bitmask[rows[i]]``."""

    @abc.abstractmethod
    def fill_one(self, matcher: Any, row: int, bitmask: torch.Tensor) -> None:
        """Write one matcher's bitmask into ``bitmask[row]`` on the calling thread."""

    @abc.abstractmethod
    def advance(self, matchers: Sequence[Any], tokens: Sequence[int]) -> list[bool]:
        """Feed ``tokens[i]`` to ``matchers[i]``; False where a matcher rejects its token."""


class LLGuidanceBackend(Backend):
    name = package = "llguidance"

    def setup(self, threads: int) -> None:
        import llguidance.hf
        import llguidance.torch

        self.ll = llguidance
        self.lltok = llguidance.hf.from_tokenizer(self.tokenizer)
        self.set_threads(threads)

    def set_threads(self, threads: int) -> None:
        self.executor = self.ll.LLExecutor(num_threads=threads)

    def compile(self, schema: Schema) -> Any:
        options = {"whitespace_flexible": False}
        grammar = self.ll.LLMatcher.grammar_from_json_schema(schema, defaults=options)  # type: ignore[arg-type]
        matcher = self.ll.LLMatcher(self.lltok, grammar, log_level=0)
        if matcher.is_error():
            raise CompileError(matcher.get_error())
        for warning in matcher.get_grammar_warnings():
            warnings.warn(warning, stacklevel=1)
        return matcher

    def new_matcher(self, compiled: Any) -> Any:
        return compiled.deep_copy()

    def fill(self, matchers: Sequence[Any], rows: Sequence[int], bitmask: torch.Tensor) -> None:
        pairs = list(zip(matchers, rows, strict=True))
        self.ll.torch.fill_next_token_bitmask_par(self.executor, pairs, bitmask)

    def fill_one(self, matcher: Any, row: int, bitmask: torch.Tensor) -> None:
        self.ll.torch.fill_next_token_bitmask(matcher, bitmask, row)

    def advance(self, matchers: Sequence[Any], tokens: Sequence[int]) -> list[bool]:
        return self.executor.consume_token_par(list(zip(matchers, tokens, strict=True)))


class OutlinesCoreBackend(Backend):
    name = package = "outlines-core"

    def setup(self, threads: int) -> None:
        import outlines_core

        self.oc = outlines_core
        table: dict[bytes, list[int]] = {}
        for token_id, raw in enumerate(self.token_bytes):
            if token_id != self.eos:
                table.setdefault(raw, []).append(token_id)
        self.vocabulary = outlines_core.Vocabulary(self.eos, table)

    def set_threads(self, threads: int) -> None:
        """outlines-core has no batched or threaded mask API: rows are filled one by one."""

    def compile(self, schema: Schema) -> Any:
        regex = self.oc.json_schema.build_regex_from_schema(json.dumps(schema), whitespace_pattern="")
        return self.oc.Index(regex, self.vocabulary)

    def compile_timed(self, schema: Schema, limit_s: float) -> tuple[Any, float]:
        """Compile in a forked child, killed after ``limit_s``: some regexes make the DFA explode
        (one schema here ate 24 GiB in minutes). The child sends back the Index (it pickles)."""
        context = multiprocessing.get_context("fork")
        receive, send = context.Pipe(duplex=False)
        child = context.Process(target=self._compile_child, args=(schema, send), daemon=True)
        child.start()
        send.close()
        try:
            if not receive.poll(limit_s):
                raise CompileError(f"compile did not finish in {limit_s:.0f} s (killed)")
            outcome, payload, seconds = receive.recv()
        finally:
            child.kill()
            child.join()
        if outcome == "raised":
            raise CompileError(payload)
        return payload, seconds

    def _compile_child(self, schema: Schema, send: Any) -> None:
        start = time.perf_counter()
        try:
            index = self.compile(schema)
        except BaseException as exc:  # pyo3 panics derive from BaseException
            send.send(("raised", f"{type(exc).__name__}: {exc}", 0.0))
            return
        send.send(("ok", index, time.perf_counter() - start))

    def new_matcher(self, compiled: Any) -> Any:
        return self.oc.Guide(compiled)

    def fill(self, matchers: Sequence[Any], rows: Sequence[int], bitmask: torch.Tensor) -> None:
        for guide, row in zip(matchers, rows, strict=True):
            self.fill_one(guide, row, bitmask)

    def fill_one(self, matcher: Any, row: int, bitmask: torch.Tensor) -> None:
        matcher.write_mask_into(bitmask[row].data_ptr(), bitmask.shape[1], 4)

    def advance(self, matchers: Sequence[Any], tokens: Sequence[int]) -> list[bool]:
        return [self._advance_one(guide, token) for guide, token in zip(matchers, tokens, strict=True)]

    def _advance_one(self, guide: Any, token: int) -> bool:
        if token == self.eos:  # a Guide has no transition on EOS; it is allowed in final states
            return bool(guide.is_finished())
        try:
            guide.advance(token, return_tokens=False)
        except ValueError:
            return False
        return True


class XGrammarBackend(Backend):
    name = package = "xgrammar"

    def setup(self, threads: int) -> None:
        import xgrammar

        self.xgr = xgrammar
        info = xgrammar.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=self.vocab)
        self.compiler = xgrammar.GrammarCompiler(info, max_threads=threads)
        self.set_threads(threads)

    def set_threads(self, threads: int) -> None:
        self.batch = self.xgr.BatchGrammarMatcher(max_threads=threads)

    def compile(self, schema: Schema) -> Any:
        try:
            return self.compiler.compile_json_schema(json.dumps(schema), any_whitespace=False)
        except RuntimeError as exc:  # xgrammar reports schema errors as RuntimeError
            raise CompileError(str(exc)) from exc

    def new_matcher(self, compiled: Any) -> Any:
        return self.xgr.GrammarMatcher(compiled)

    def fill(self, matchers: Sequence[Any], rows: Sequence[int], bitmask: torch.Tensor) -> None:
        self.batch.batch_fill_next_token_bitmask(list(matchers), bitmask, list(rows))

    def fill_one(self, matcher: Any, row: int, bitmask: torch.Tensor) -> None:
        matcher.fill_next_token_bitmask(bitmask, row)

    def advance(self, matchers: Sequence[Any], tokens: Sequence[int]) -> list[bool]:
        return self.xgr.BatchGrammarMatcher.batch_accept_token(list(matchers), list(tokens))


BACKENDS: dict[str, type[Backend]] = {
    cls.name: cls for cls in (LLGuidanceBackend, OutlinesCoreBackend, XGrammarBackend)
}


# ----------------------------------------------------------------------------- tokenizer


def byte_level_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet: the printable character that stands for each byte."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]  # "!".."~", "¡".."¬", "®".."ÿ"
    chars = {byte: byte for byte in printable}
    extra = 0
    for byte in range(256):
        if byte not in chars:
            chars[byte] = 256 + extra
            extra += 1
    return {chr(char): byte for byte, char in chars.items()}


def token_bytes(tokenizer: Any) -> list[bytes]:
    """The bytes each token id stands for (byte-level BPE; special tokens as their text)."""
    decoder = byte_level_decoder()
    table = [b""] * len(tokenizer)
    for text, token_id in tokenizer.get_vocab().items():
        if all(char in decoder for char in text):
            table[token_id] = bytes(decoder[char] for char in text)
        else:
            table[token_id] = text.encode()
    return table


def default_tokenizer_dir() -> str | None:
    """Blaze's SmolLM2 tokenizer folder (built on first use); None when Blaze is not reachable."""
    try:
        from blaze_ai.engines.llm import builtins

        return str(builtins.materialize(BUILTIN_TOKENIZER))
    except Exception:  # not importable from this virtualenv: ask the project's own
        python = REPO / ".venv" / "bin" / "python"
        if not python.exists():
            return None
        code = f"import blaze_ai.engines.llm.builtins as b; print(b.materialize({BUILTIN_TOKENIZER!r}))"
        done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)
        lines = done.stdout.strip().splitlines()
        return lines[-1] if done.returncode == 0 and lines else None


# ----------------------------------------------------------------------------- batched decoding


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    rows: int
    seed: int
    max_tokens: int
    force_eos_after: int
    close_after: int
    close_bias: float


@dataclasses.dataclass
class Job:
    schema: str
    compiled: Any


@dataclasses.dataclass
class Row:
    job: Job
    matcher: Any
    tokens: list[int] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Finished:
    job: Job
    tokens: list[int]
    reason: str  # eos | truncated | dead-end (no token allowed) | rejected (matcher refused its own mask)


#: Timed parts of a decode step: all of it, mask filling, masking + argmax, advancing + restarting rows.
PHASES = ("step", "fill", "pick", "advance")
#: The int32 value of each bit of a bitmask word (bit 31 is the sign bit).
BIT_VALUES = torch.tensor([(1 << bit) - (bit == 31) * (1 << 32) for bit in range(32)], dtype=torch.int32)


def apply_bitmask(logits: torch.Tensor, bitmask: torch.Tensor) -> None:
    """Set the logits of tokens whose bit is 0 to -inf, in place (one kernel for every backend)."""
    rows, vocab = logits.shape
    allowed = (bitmask[:rows].unsqueeze(-1) & BIT_VALUES).ne(0).view(rows, -1)[:, :vocab]
    logits.masked_fill_(~allowed, float("-inf"))


class BatchDecoder:
    """Up to ``cfg.rows`` jobs decoded together, one token per row per step; ended rows take new jobs."""

    def __init__(
        self,
        backend: Backend,
        jobs: Iterator[Job],
        cfg: SamplingConfig,
        closing: torch.Tensor,
        row_by_row: bool = False,
    ) -> None:
        self.backend, self.jobs, self.cfg, self.closing = backend, jobs, cfg, closing
        self.row_by_row = row_by_row  # fill each row alone (``fill_one``) and time it into row_fill_s
        self.row_fill_s: list[float] = []
        self.bitmask = torch.zeros((cfg.rows, (backend.vocab + 31) // 32), dtype=torch.int32)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.rows: list[Row | None] = [self._start() for _ in range(cfg.rows)]
        self.finished: list[Finished] = []
        self.seconds: dict[str, list[float]] = {phase: [] for phase in PHASES}

    def _start(self) -> Row | None:
        job = next(self.jobs, None)
        return None if job is None else Row(job, self.backend.new_matcher(job.compiled))

    def busy(self) -> bool:
        return any(row is not None for row in self.rows)

    def step(self) -> None:
        """Fill masks, mask and pick, advance, restart ended rows; all timed but making the logits."""
        live = [i for i, row in enumerate(self.rows) if row is not None]
        logits = self._logits(live)
        start = time.perf_counter()
        if self.row_by_row:
            self._fill_row_by_row(live)
        else:
            self.backend.fill([self._row(i).matcher for i in live], live, self.bitmask)
        filled = time.perf_counter()
        tokens = self._pick(logits, live)
        picked = time.perf_counter()
        moving = [(i, token) for i, token in zip(live, tokens, strict=True) if token >= 0]
        accepted = self.backend.advance([self._row(i).matcher for i, _ in moving], [t for _, t in moving])
        verdict = {i: ok for (i, _), ok in zip(moving, accepted, strict=True)}
        for i, token in zip(live, tokens, strict=True):
            self._settle(i, token, verdict.get(i, False))
        end = time.perf_counter()
        spans = (end - start, filled - start, picked - filled, end - picked)
        for phase, seconds in zip(PHASES, spans, strict=True):
            self.seconds[phase].append(seconds)

    def _fill_row_by_row(self, live: list[int]) -> None:
        for i in live:
            start = time.perf_counter()
            self.backend.fill_one(self._row(i).matcher, i, self.bitmask)
            self.row_fill_s.append(time.perf_counter() - start)

    def _row(self, index: int) -> Row:
        row = self.rows[index]
        assert row is not None
        return row

    def _logits(self, live: list[int]) -> torch.Tensor:
        """Seeded N(0, 1) logits for the live rows, plus the closing bias on rows past close_after."""
        logits = torch.randn((len(live), self.backend.vocab), generator=self.generator)
        long_rows = [k for k, i in enumerate(live) if len(self._row(i).tokens) >= self.cfg.close_after]
        if long_rows:
            logits[long_rows] += self.closing
        return logits

    def _pick(self, logits: torch.Tensor, live: list[int]) -> list[int]:
        """Argmax of the masked logits per live row; EOS when forced and allowed; -1 for no token."""
        eos = self.backend.eos
        mask = self.bitmask[live] if len(live) < self.cfg.rows else self.bitmask
        apply_bitmask(logits, mask)
        best, index = (values.tolist() for values in logits.max(dim=1))
        eos_ok = ((mask[:, eos // 32] >> (eos % 32)) & 1).tolist()
        picks = []
        for k, i in enumerate(live):
            if best[k] == float("-inf"):
                picks.append(-1)
            elif eos_ok[k] and len(self._row(i).tokens) >= self.cfg.force_eos_after:
                picks.append(eos)
            else:
                picks.append(int(index[k]))
        return picks

    def _settle(self, index: int, token: int, accepted: bool) -> None:
        row = self._row(index)
        reason = ""
        if token < 0:
            reason = "dead-end"
        elif not accepted:
            reason = "rejected"
        else:
            row.tokens.append(token)
            if token == self.backend.eos:
                reason = "eos"
            elif len(row.tokens) >= self.cfg.max_tokens:
                reason = "truncated"
        if reason:
            self.finished.append(Finished(row.job, row.tokens, reason))
            self.rows[index] = self._start()


def closing_bias(table: list[bytes], args: Any) -> torch.Tensor:
    """``args.close_bias`` on every token whose bytes hold a closing quote or bracket, 0 elsewhere."""
    closing = torch.zeros(len(table))
    hits = [i for i, raw in enumerate(table) if any(char in raw for char in CLOSING_CHARS)]
    closing[hits] = args.close_bias
    return closing


# ----------------------------------------------------------------------------- measurements


@dataclasses.dataclass
class SchemaResult:
    status: str = "ok"  # ok | raised
    error: str = ""
    warnings: list[str] = dataclasses.field(default_factory=list)
    compile_ms: float = 0.0
    first_mask_ms: float = 0.0
    outcomes: list[str] = dataclasses.field(default_factory=list)  # one per sample
    examples: dict[str, str] = dataclasses.field(default_factory=dict)  # first failing output per outcome
    row_fill_ms: dict[str, float] = dataclasses.field(default_factory=dict)  # per row and step, p50/p90/max


@dataclasses.dataclass
class BackendReport:
    name: str
    version: str = ""
    unavailable: str = ""
    setup_ms: float = 0.0  # median of SETUP_REPEATS
    setup_runs_ms: list[float] = dataclasses.field(default_factory=list)
    schemas: dict[str, SchemaResult] = dataclasses.field(default_factory=dict)
    decode: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)  # by thread count


#: The backends that set up, by name: their report, the backend, their compiled schemas by name.
Live = dict[str, tuple[BackendReport, Backend, dict[str, Any]]]


def compile_one(backend: Backend, schema: Schema, limit_s: float) -> tuple[SchemaResult, Any]:
    """Compile ``schema`` and compute one first mask; a refusal is a result, not an error."""
    with warnings.catch_warnings(record=True) as caught, native_stderr() as printed:
        warnings.simplefilter("always")
        try:
            compiled, seconds = backend.compile_timed(schema, limit_s)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # pyo3 panics derive from BaseException
            return SchemaResult("raised", error=one_line(f"{type(exc).__name__}: {exc}")), None
        start = time.perf_counter()
        one_row = torch.zeros((1, (backend.vocab + 31) // 32), dtype=torch.int32)
        backend.fill([backend.new_matcher(compiled)], [0], one_row)
        first_mask_s = seconds + time.perf_counter() - start
    result = SchemaResult(compile_ms=seconds * 1e3, first_mask_ms=first_mask_s * 1e3)
    result.warnings = [one_line(str(item.message)) for item in caught]
    result.warnings += [one_line(re.sub(r"^\[[\d:]+\] \S+: ", "", line)) for line in printed]
    return result, compiled


@contextlib.contextmanager
def native_stderr() -> Iterator[list[str]]:
    """The lines native code (xgrammar's C++ logging) writes to file descriptor 2 inside the block."""
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines += [line for line in sink.read().decode(errors="replace").splitlines() if line.strip()]


def one_line(text: str, limit: int = 400) -> str:
    return " ".join(text.split())[:limit]


def judge(finished: Finished, schema: Schema, table: list[bytes], eos: int) -> tuple[str, str]:
    """The outcome of one sample and, when it is not valid, the text with the reason."""
    if finished.reason != "eos":
        return finished.reason, ""
    raw = b"".join(table[token] for token in finished.tokens if token != eos)
    try:
        value = json.loads(raw.decode("utf-8"))
    except ValueError as exc:  # UnicodeDecodeError is a ValueError too
        return "invalid-json", one_line(f"{raw[:200]!r}: {exc}")
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    error = next(iter(validator.iter_errors(value)), None)
    if error is None:
        return "valid", ""
    where = "/" + "/".join(str(part) for part in error.absolute_path)
    text = raw[:160].decode(errors="replace")
    return "schema-violation", one_line(f"{text} -> {error.validator} at {where}: {error.message[:160]}")


def sample_corpus(
    backend: Backend, compiled: dict[str, Any], schemas: dict[str, Schema], report: BackendReport, args: Any
) -> None:
    """``args.samples`` constrained outputs per compiled schema, decoded 32 at a time, then validated."""
    jobs = iter([Job(name, grammar) for name, grammar in compiled.items() for _ in range(args.samples)])
    decoder = BatchDecoder(backend, jobs, sampling_config(args), closing_bias(backend.token_bytes, args))
    while decoder.busy():
        decoder.step()
    for finished in decoder.finished:
        result = report.schemas[finished.job.schema]
        outcome, example = judge(finished, schemas[finished.job.schema], backend.token_bytes, backend.eos)
        result.outcomes.append(outcome)
        if example:
            result.examples.setdefault(outcome, example)


def time_decode(live: Live, common: list[str], threads: int, args: Any) -> None:
    """Decode-step percentiles per backend at ``args.rows`` rows cycling through the ``common`` schemas.

    After ``args.warmup`` steps each, the backends take turns, ``args.rounds`` rounds of
    ``args.steps / args.rounds`` steps, so load from other processes spreads over all of them."""
    decoders = {}
    for name, (_, backend, compiled) in live.items():
        backend.set_threads(threads)
        jobs = endless_jobs(compiled, common)
        decoder = BatchDecoder(backend, jobs, sampling_config(args), closing_bias(backend.token_bytes, args))
        for _ in range(args.warmup):
            decoder.step()
        for seconds in decoder.seconds.values():
            seconds.clear()
        decoders[name] = (decoder, len(decoder.finished))
    for _ in range(args.rounds):
        for decoder, _ in decoders.values():
            for _ in range(args.steps // args.rounds):
                decoder.step()
    for name, (decoder, finished_before) in decoders.items():
        summary = summarize(decoder.seconds, args.rows)
        summary["rows_restarted"] = len(decoder.finished) - finished_before
        live[name][0].decode[str(threads)] = summary
        log(f"{name}: decode step at {threads} thread(s): p50 {summary['step_p50']:.2f} ms")


def time_masks_per_schema(live: Live, common: list[str], args: Any) -> None:
    """Mask-fill time of one row, each schema alone: 8 rows for ``args.per_schema_steps`` steps, each
    row filled on its own on the calling thread (no pool hand-off), so the grammar's cost shows."""
    config = dataclasses.replace(sampling_config(args), rows=8)
    for name, (report, backend, compiled) in live.items():
        start = time.perf_counter()
        for schema in common:
            jobs = endless_jobs(compiled, [schema])
            decoder = BatchDecoder(
                backend, jobs, config, closing_bias(backend.token_bytes, args), row_by_row=True
            )
            for _ in range(args.per_schema_steps):
                decoder.step()
            per_row = sorted(seconds * 1e3 for seconds in decoder.row_fill_s)
            p90 = per_row[int(0.9 * (len(per_row) - 1))]
            report.schemas[schema].row_fill_ms = {
                "p50": statistics.median(per_row),
                "p90": p90,
                "max": per_row[-1],
            }
        log(f"{name}: per-schema mask cost in {time.perf_counter() - start:.1f} s")


def endless_jobs(compiled: dict[str, Any], names: list[str]) -> Iterator[Job]:
    """Jobs for the ``names`` schemas, round and round."""
    for name in itertools.cycle(names):
        yield Job(name, compiled[name])


def summarize(seconds: dict[str, list[float]], rows: int) -> dict[str, float]:
    """Percentiles of every phase, plus the grammar's own part (fill + advance) per step."""
    pairs = zip(seconds["fill"], seconds["advance"], strict=True)
    seconds = {**seconds, "grammar": [fill + advance for fill, advance in pairs]}
    summary: dict[str, float] = {}
    for phase, values in seconds.items():
        summary |= {f"{phase}_{key}": value for key, value in percentiles(values).items()}
    summary["tokens_per_s"] = rows * len(seconds["step"]) / sum(seconds["step"])
    return summary


def percentiles(seconds: list[float]) -> dict[str, float]:
    """p50/p90/p99 and mean, in milliseconds."""
    cuts = statistics.quantiles([s * 1e3 for s in seconds], n=100, method="inclusive")
    return {"p50": cuts[49], "p90": cuts[89], "p99": cuts[98], "mean": statistics.fmean(seconds) * 1e3}


def sampling_config(args: Any) -> SamplingConfig:
    return SamplingConfig(
        rows=args.rows, seed=args.seed, max_tokens=args.max_tokens, force_eos_after=args.force_eos_after,
        close_after=args.close_after, close_bias=args.close_bias,
    )  # fmt: skip


# ----------------------------------------------------------------------------- orchestration


def prepare_backend(
    name: str, tokenizer: Any, table: list[bytes], schemas: dict[str, Schema], threads: int, limit_s: float
) -> tuple[BackendReport, Backend | None, dict[str, Any]]:
    """Set the backend up (timed) and compile every schema; an import failure marks it unavailable."""
    report = BackendReport(name)
    try:
        report.version = importlib.metadata.version(BACKENDS[name].package)
        backend = BACKENDS[name](tokenizer, table)
        for _ in range(SETUP_REPEATS):
            start = time.perf_counter()
            backend.setup(threads)
            report.setup_runs_ms.append((time.perf_counter() - start) * 1e3)
        report.setup_ms = statistics.median(report.setup_runs_ms)
    except Exception as exc:
        report.unavailable = f"{type(exc).__name__}: {exc}"[:400]
        log(f"{name}: unavailable: {report.unavailable}")
        return report, None, {}
    compiled: dict[str, Any] = {}
    for schema_name, schema in schemas.items():
        report.schemas[schema_name], grammar = compile_one(backend, schema, limit_s)
        if grammar is not None:
            compiled[schema_name] = grammar
    log(f"{name}: set-up {report.setup_ms:.0f} ms, {len(compiled)}/{len(schemas)} schemas compiled")
    return report, backend, compiled


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark; returns what ``--json`` writes."""
    from transformers import AutoTokenizer

    machine = machine_info()
    torch.set_num_threads(args.torch_threads)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    table = token_bytes(tokenizer)
    paths = [path for path in sorted(Path(args.schemas).glob("*.json")) if path.stem not in args.exclude]
    schemas = {path.stem: json.loads(path.read_text()) for path in paths}
    reports: list[BackendReport] = []
    live: Live = {}
    for name in args.backends:
        report, backend, compiled = prepare_backend(
            name, tokenizer, table, schemas, max(args.threads), args.compile_timeout
        )
        reports.append(report)
        if backend is not None:
            live[name] = (report, backend, compiled)
    common = [name for name in schemas if all(name in compiled for _, _, compiled in live.values())]
    for name, (report, backend, compiled) in live.items():
        start = time.perf_counter()
        sample_corpus(backend, compiled, schemas, report, args)
        log(f"{name}: sampled {args.samples} x {len(compiled)} in {time.perf_counter() - start:.1f} s")
    for threads in args.threads if args.steps else []:
        time_decode(live, common, threads, args)
    if args.per_schema_steps:
        time_masks_per_schema(live, common, args)
    machine["load_average_end"] = os.getloadavg()
    return {
        "machine": machine,
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "schemas": list(schemas),
        "decode_mix": common,
        "backends": [dataclasses.asdict(report) for report in reports],
    }


def machine_info() -> dict[str, Any]:
    """What this ran on, read from the machine."""
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        models = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
        cpu = models[0] if models else cpu
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average": os.getloadavg(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch_threads_default": torch.get_num_threads(),
        "versions": versions,
    }


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- report

OUTCOMES = ("valid", "schema-violation", "invalid-json", "truncated", "dead-end", "rejected")


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table; the first column is left-aligned, the others right-aligned."""
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def median_max(results: list[dict[str, Any]], key: str) -> str:
    """Median and max of ``key`` over ``results``, the slowest schema named."""
    if not results:
        return "-"
    slowest = max(results, key=lambda r: r[key])
    return f"{statistics.median(r[key] for r in results):.1f} ({slowest[key]:.0f}, {slowest['name'][:2]})"


def compiled_results(backend: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": name, **r} for name, r in backend["schemas"].items() if r["status"] == "ok"]


def summary_table(backends: list[dict[str, Any]], samples: int) -> str:
    rows = []
    for b in backends:
        if b["unavailable"]:
            rows.append([b["name"], b["version"] or "-", "unavailable", "", "", "", "", "", ""])
            continue
        ok = compiled_results(b)
        outcomes = [o for r in ok for o in r["outcomes"]]
        wrong = outcomes.count("schema-violation") + outcomes.count("invalid-json")
        warned = sum(bool(r["warnings"]) for r in ok)
        rows.append([
            b["name"], b["version"], f"{b['setup_ms']:.0f}", f"{len(ok)}/{len(b['schemas'])}", warned,
            median_max(ok, "compile_ms"), median_max(ok, "first_mask_ms"),
            f"{wrong}/{len(outcomes)}", f"{outcomes.count('valid')}/{samples * len(b['schemas'])}",
        ])  # fmt: skip
    header = ["backend", "version", "set-up ms", "compiled", "of them warned", "compile ms p50 (max, schema)",
              "first mask ms p50 (max, schema)", "wrong outputs", "valid / all"]  # fmt: skip
    return table(header, rows)


def outcome_table(backends: list[dict[str, Any]]) -> str:
    rows = []
    for b in backends:
        outcomes = [o for r in b["schemas"].values() for o in r["outcomes"]]
        raised = sum(r["status"] == "raised" for r in b["schemas"].values())
        rows.append([b["name"], raised, *(outcomes.count(o) for o in OUTCOMES)])
    return table(["backend", "schemas raised", *OUTCOMES], rows)


#: The parts of a step the decode table shows: the grammar's own (fill + advance), then each phase.
SHOWN_PHASES = ("grammar", "fill", "pick", "advance")


def decode_table(backends: list[dict[str, Any]]) -> str:
    rows = []
    for b in backends:
        for threads, d in b["decode"].items():
            steps = [f"{d[key]:.2f}" for key in ("step_p50", "step_p90", "step_p99")]
            parts = [f"{d[f'{phase}_p50']:.2f} / {d[f'{phase}_p99']:.2f}" for phase in SHOWN_PHASES]
            rows.append([b["name"], threads, *steps, *parts, f"{d['tokens_per_s']:.0f}", d["rows_restarted"]])
    header = ["backend", "threads", "step p50", "p90", "p99", "grammar (fill+advance) p50 / p99"]
    header += ["fill p50 / p99", "mask+argmax p50 / p99", "advance p50 / p99", "tok/s", "restarts"]
    return table(header, rows)


def slowest_masks_table(backends: list[dict[str, Any]], count: int = 4) -> str:
    """Per backend, the typical one-row mask cost and the schemas whose masks cost the most."""
    rows = []
    for b in backends:
        timed = {name: r["row_fill_ms"] for name, r in b["schemas"].items() if r["row_fill_ms"]}
        if not timed:
            continue
        p50 = statistics.median(t["p50"] for t in timed.values())
        p90 = statistics.median(t["p90"] for t in timed.values())
        slowest = sorted(timed, key=lambda name: timed[name]["p90"], reverse=True)[:count]
        rows.append(
            [b["name"], f"{p50:.3f}", f"{p90:.3f}", ", ".join(f"{n} {timed[n]['p90']:.2f}" for n in slowest)]
        )
    header = ["backend", "p50 (median over schemas)", "p90 (median over schemas)", f"slowest {count} by p90"]
    return table(header, rows)


def schema_cell(result: dict[str, Any]) -> str:
    if result["status"] != "ok":
        return "raised"
    outcomes = result["outcomes"]
    bad = sorted({o for o in outcomes if o != "valid"})
    cell = f"{outcomes.count('valid')}/{len(outcomes)}" + (f" {','.join(bad)}" if bad else "")
    return cell + (" (warned)" if result["warnings"] else "")


def schema_table(report: dict[str, Any]) -> str:
    backends = [b for b in report["backends"] if not b["unavailable"]]
    rows = [[name, *(schema_cell(b["schemas"][name]) for b in backends)] for name in report["schemas"]]
    return table(["schema", *(b["name"] for b in backends)], rows)


def problems(backends: list[dict[str, Any]]) -> str:
    """Every refusal, warning and first failing sample, one line each."""
    lines = []
    for b in backends:
        for name, r in b["schemas"].items():
            if r["error"]:
                lines.append(f"- {b['name']} raised on {name}: {r['error'][:200]}")
            lines += [f"- {b['name']} warned on {name}: {w[:200]}" for w in dict.fromkeys(r["warnings"])]
            for outcome, example in r["examples"].items():
                lines.append(f"- {b['name']} {outcome} on {name}: {example[:240]}")
    return "\n".join(lines) or "(none)"


def render(report: dict[str, Any]) -> str:
    m, backends, s = report["machine"], report["backends"], report["settings"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    return "\n\n".join([
        f"Machine: {m['cpu']}, {m['cores']} cores, load {m['load_average'][0]:.2f}; {m['platform']}; "
        f"Python {m['python']}; {versions}; {m['date']}",
        f"{len(report['schemas'])} schemas, {s['samples']} samples each; decode: {s['rows']} rows, "
        f"{s['warmup']} warm-up + {s['steps']} timed steps over the {len(report['decode_mix'])} schemas "
        "every backend compiles",
        "Set-up, compile and coverage (wrong = schema-violation or invalid-json among sampled outputs)\n\n"
        + summary_table(backends, s["samples"]),
        "Sample outcomes\n\n" + outcome_table(backends),
        "Decode step (fill masks + mask logits + argmax + advance), ms\n\n" + decode_table(backends),
        "Mask fill of one row, each schema alone (8 rows filled one by one on the calling thread), ms\n\n"
        + slowest_masks_table(backends),
        "Per schema (valid samples / samples, or raised)\n\n" + schema_table(report),
        "Refusals, warnings, first failing output per schema\n\n" + problems(backends),
    ])  # fmt: skip


# ----------------------------------------------------------------------------- entry point


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer", help="tokenizer folder (default: Blaze's builtin:smollm2-135m)")
    parser.add_argument("--schemas", default=str(SCHEMA_DIR), help="folder of *.json schemas")
    parser.add_argument(
        "--exclude", default="", help="comma-separated schema names (file stems) to leave out"
    )
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated subset")
    parser.add_argument("--threads", default="1,2", help="library thread counts to time the decode step with")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch threads for the shared masking")
    parser.add_argument("--per-schema-steps", type=int, default=40, help="mask cost per schema (0: skip)")
    parser.add_argument("--rounds", type=int, default=5, help="turns the backends take during timed steps")
    parser.add_argument("--rows", type=int, default=32, help="concurrent matchers per decode step")
    parser.add_argument(
        "--steps", type=int, default=300, help="timed decode steps per thread count (0: skip)"
    )
    parser.add_argument("--warmup", type=int, default=30, help="untimed decode steps first")
    parser.add_argument("--samples", type=int, default=3, help="outputs sampled per compiled schema")
    parser.add_argument("--compile-timeout", type=float, default=60, help="seconds (outlines-core only)")
    parser.add_argument("--max-tokens", type=int, default=400)
    parser.add_argument("--force-eos-after", type=int, default=200)
    parser.add_argument("--close-after", type=int, default=60)
    parser.add_argument("--close-bias", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the full results here")
    args = parser.parse_args(argv)
    args.backends = [name.strip() for name in args.backends.split(",") if name.strip()]
    unknown = set(args.backends) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backends {sorted(unknown)}; choose from {list(BACKENDS)}")
    args.threads = [int(n) for n in args.threads.split(",")]
    args.exclude = [name.strip() for name in args.exclude.split(",") if name.strip()]
    args.tokenizer = args.tokenizer or default_tokenizer_dir()
    if not args.tokenizer:
        parser.error("--tokenizer DIR is required: blaze_ai is not importable to find builtin:smollm2-135m")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    print(render(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
