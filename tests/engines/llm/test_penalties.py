"""Penalties, logit bias, min-p, min_tokens, stop tokens, ignore_eos and log probabilities.

Two levels: :func:`~blaze_ai.engines.llm.sampling.sample` on hand-made logits (exact arithmetic),
and the :class:`EngineCore` on the tiny built-in, checked against a manual forward pass of the model
(what the engine reports and picks must follow from the raw logits of the very same tokens).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field

import pytest
import torch

from blaze_ai.engines.llm import LLMConfig, LoadedModel
from blaze_ai.engines.llm.core import EngineCore
from blaze_ai.engines.llm.sampling import RowSampling, StepContext, make_generator, sample
from blaze_ai.engines.requests import GenerationRequest, SamplingParams, StructuredOutput, TokenLogprob

TINY = "builtin:tiny-llama"
EOS = 2  # <|im_end|> of the tiny built-in
PROMPT = "The quick brown fox"
EPS = 1e-3  # margin of the probe token that reads an adjusted logit back (float32 is exact to ~1e-6 here)

# -- unit: sample() on hand-made logits -------------------------------------------------------------

VOCAB = 8
PROBE = 7  # a token that is never seen, biased or banned: its logit is left alone


def pick(logits: list[float], row: RowSampling, outputs: list[int] | None = None) -> int:
    ctx = StepContext(outputs=None if outputs is None else [outputs])
    return sample(torch.tensor([logits]), [row], ctx).tokens[0]


def assert_adjusted(token: int, raw: float, expected: float, row: RowSampling, outputs: list[int]) -> None:
    """After ``row``'s penalties, ``token`` (raw logit ``raw``) has logit ``expected`` (read with a probe)."""
    for probe, winner in ((expected + EPS, PROBE), (expected - EPS, token)):
        logits = [-50.0] * VOCAB
        logits[token], logits[PROBE] = raw, probe
        assert pick(logits, row, outputs) == winner, (token, raw, expected, probe)


@pytest.mark.parametrize(
    ("penalty", "token", "raw", "expected"),
    [
        (0.5, 3, 4.0, 4.0 - 3 * 0.5),  # generated three times
        (0.5, 5, 4.0, 4.0 - 1 * 0.5),  # generated once
        (0.5, 4, 4.0, 4.0),  # never generated: untouched
        (1.25, 3, -1.0, -1.0 - 3 * 1.25),  # negative logits are lowered the same way
        (-0.5, 3, 4.0, 4.0 + 3 * 0.5),  # a negative penalty encourages repeats
    ],
)
def test_frequency_penalty_lowers_a_logit_by_count_times_penalty(
    penalty: float, token: int, raw: float, expected: float
) -> None:
    assert_adjusted(token, raw, expected, RowSampling(frequency_penalty=penalty), outputs=[3, 5, 3, 3])


@pytest.mark.parametrize(
    ("token", "raw", "expected"),
    [(3, 4.0, 4.0 - 0.75), (5, 4.0, 4.0 - 0.75), (4, 4.0, 4.0), (3, -2.0, -2.75)],
)
def test_presence_penalty_lowers_a_seen_token_once(token: int, raw: float, expected: float) -> None:
    assert_adjusted(token, raw, expected, RowSampling(presence_penalty=0.75), outputs=[3, 5, 3, 3])


def test_frequency_and_presence_penalties_add_up() -> None:
    row = RowSampling(frequency_penalty=0.5, presence_penalty=0.25)
    assert_adjusted(3, 4.0, 4.0 - 1.5 - 0.25, row, outputs=[3, 3, 3])


@pytest.mark.parametrize(
    ("penalty", "token", "raw", "expected"),
    [
        (2.0, 3, 4.0, 2.0),  # seen in the output, positive: divided
        (2.0, 3, -3.0, -6.0),  # seen in the output, negative: multiplied
        (2.0, 1, 4.0, 2.0),  # seen in the prompt only: penalised too
        (2.0, 1, -1.5, -3.0),
        (2.0, 4, 4.0, 4.0),  # seen nowhere: untouched
        (0.5, 3, 4.0, 8.0),  # below 1 it rewards repeats
        (1.0, 3, 4.0, 4.0),  # 1 is off
    ],
)
def test_repetition_penalty_divides_positive_and_multiplies_negative_logits(
    penalty: float, token: int, raw: float, expected: float
) -> None:
    row = RowSampling(repetition_penalty=penalty, prompt_ids=[1, 2])
    assert_adjusted(token, raw, expected, row, outputs=[3, 3])


def test_repetition_penalty_counts_a_token_once_and_applies_before_frequency() -> None:
    row = RowSampling(repetition_penalty=2.0, frequency_penalty=0.5, prompt_ids=[3, 3])
    assert_adjusted(3, 6.0, 6.0 / 2.0 - 2 * 0.5, row, outputs=[3, 3])


def test_logit_bias_adds_after_penalties() -> None:
    row = RowSampling(frequency_penalty=1.0, logit_bias=((3, 2.5), (4, -1.0)))
    assert_adjusted(3, 1.0, 1.0 - 2 * 1.0 + 2.5, row, outputs=[3, 3])
    assert_adjusted(4, 1.0, 0.0, row, outputs=[3, 3])


def test_minus_100_bias_bans_the_favourite_greedy_and_sampled() -> None:
    logits = torch.zeros(1, VOCAB)
    logits[0, 0] = 12.0  # all but certain without the bias
    bias = ((0, -100.0),)
    assert pick(logits[0].tolist(), RowSampling()) == 0
    assert pick(logits[0].tolist(), RowSampling(logit_bias=bias)) != 0
    unbiased = [
        sample(logits.clone(), [RowSampling(1.0, generator=make_generator(s))]).tokens[0] for s in range(50)
    ]
    assert unbiased.count(0) >= 45
    for seed in range(50):
        for temperature in (0.7, 1.0, 2.0):
            row = RowSampling(temperature, logit_bias=bias, generator=make_generator(seed))
            assert sample(logits.clone(), [row]).tokens[0] != 0


def test_plus_100_bias_forces_a_token_greedy_and_sampled() -> None:
    logits = torch.randn(1, VOCAB, generator=torch.Generator().manual_seed(4)) * 3
    target = int(logits[0].argmin())
    for seed in range(50):
        row = RowSampling(2.0, top_p=0.9, logit_bias=((target, 100.0),), generator=make_generator(seed))
        assert sample(logits.clone(), [row]).tokens[0] == target
    assert pick(logits[0].tolist(), RowSampling(logit_bias=((target, 100.0),))) == target


@pytest.mark.parametrize(
    ("min_p", "kept"), [(0.0, {0, 1, 2, 3}), (0.25, {0, 1, 2}), (0.5, {0, 1}), (1.0, {0})]
)
def test_min_p_drops_tokens_below_min_p_times_the_best(min_p: float, kept: set[int]) -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))  # thresholds: 0.125 keeps 0.15, 0.25 drops it
    gen = make_generator(9)
    seen = {
        sample(logits.clone(), [RowSampling(1.0, min_p=min_p, generator=gen)]).tokens[0] for _ in range(600)
    }
    assert seen == kept


def test_bans_of_the_step_context_forbid_tokens() -> None:
    logits = torch.tensor([[9.0, 1.0, 8.0, 0.0]])
    ctx = StepContext(banned={0: (0, 2)})
    assert sample(logits.clone(), [RowSampling()], ctx).tokens == [1]
    assert sample(logits.clone(), [RowSampling()]).tokens == [0]


def test_reported_logprobs_are_raw_and_top_alternatives_sorted() -> None:
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(2)) * 3
    rows = [
        RowSampling(logprobs=4, logit_bias=((11, 100.0),), frequency_penalty=2.0),
        RowSampling(logprobs=0),
        RowSampling(0.8, logprobs=2, generator=make_generator(1)),
    ]
    out = sample(logits.clone(), rows, StepContext(outputs=[[1, 1, 2], [], []]))
    raw = torch.log_softmax(logits, dim=-1)
    assert out.tokens[0] == 11  # forced, yet reported with the model's own probability
    assert out.logprobs is not None and out.top_ids is not None and out.top_logprobs is not None
    for i, token in enumerate(out.tokens):
        assert out.logprobs[i] == pytest.approx(raw[i, token].item(), abs=1e-5)
        assert len(out.top_ids[i]) == 4  # the most any row asked for; the core cuts each row to its own
        assert out.top_logprobs[i] == sorted(out.top_logprobs[i], reverse=True)
        assert out.top_ids[i] == raw[i].topk(4).indices.tolist()
    assert out.logprobs[0] < -1.0  # the bias is not in the reported number


# -- the engine core on the tiny built-in ---------------------------------------------------------


@dataclass
class Outcome:
    """One choice of a request run through the core, assembled from its deltas."""

    tokens: list[int] = field(default_factory=list)
    text: str = ""
    finish: str | None = None
    logprobs: list[TokenLogprob] = field(default_factory=list)
    prompt_text: str | None = None
    prompt_logprobs: list[TokenLogprob] | None = None


def make_core(model: LoadedModel) -> EngineCore:
    return EngineCore(model, LLMConfig(source=TINY, device="cpu", max_batch_size=32))


def collect(core: EngineCore, outcomes: dict[str, Outcome]) -> None:
    """One step of ``core``, its deltas added to ``outcomes``."""
    for output in core.step():
        assert output.error is None, output.error
        delta = output.delta
        assert delta is not None
        got = outcomes.setdefault(output.request_id, Outcome())
        got.tokens += delta.token_ids
        got.text += delta.text
        got.logprobs += delta.logprobs or []
        got.finish = delta.finish_reason or got.finish
        if delta.prompt_text is not None:
            got.prompt_text, got.prompt_logprobs = delta.prompt_text, delta.prompt_logprobs


def drain(core: EngineCore, outcomes: dict[str, Outcome]) -> dict[str, Outcome]:
    for _ in range(1000):
        if not core.has_work():
            return outcomes
        collect(core, outcomes)
    raise AssertionError("the core did not finish")


def run(model: LoadedModel, *requests: GenerationRequest) -> dict[str, Outcome]:
    """Run ``requests`` together in one fresh core."""
    core = make_core(model)
    for request in requests:
        core.add_request(request)
    return drain(core, {})


def request(rid: str, prompt: str = PROMPT, **params: object) -> GenerationRequest:
    options: dict[str, object] = {"max_tokens": 16, "temperature": 0.0, **params}
    return GenerationRequest(prompt=prompt, params=SamplingParams(**options), request_id=rid)  # type: ignore[arg-type]


def prompt_ids(model: LoadedModel, prompt: str) -> list[int]:
    return list(model.tokenizer(prompt)["input_ids"])


def raw_logits(model: LoadedModel, ids: list[int]) -> torch.Tensor:
    """The model's logits at every position of ``ids`` ``[len(ids), vocab]`` (one plain forward pass)."""
    with torch.inference_mode():
        logits: torch.Tensor = model.model(torch.tensor([ids])).logits[0].float()
    return logits


def test_banned_tokens_never_appear_greedy_or_sampled(tiny_model: LoadedModel) -> None:
    seeds = range(24)
    free = run(
        tiny_model,
        request("greedy"),
        *(request(f"s{s}", temperature=1.0, seed=s) for s in seeds),
    )
    seen = Counter(t for o in free.values() for t in o.tokens)
    banned = tuple((t, -100.0) for t in sorted(seen) if t != EOS)
    assert len(banned) > 100  # what the unbiased runs chose is now banned
    biased = run(
        tiny_model,
        request("greedy", logit_bias=banned),
        *(request(f"s{s}", temperature=1.0, seed=s, logit_bias=banned) for s in seeds),
        *(request(f"hot{s}", temperature=2.0, seed=s, logit_bias=banned) for s in seeds),
    )
    banned_ids = {t for t, _ in banned}
    for rid, outcome in biased.items():
        assert outcome.tokens, rid
        assert not banned_ids & set(outcome.tokens), rid


def test_plus_100_bias_forces_its_token(tiny_model: LoadedModel) -> None:
    forced = 1000
    outcomes = run(
        tiny_model,
        request("greedy", logit_bias=((forced, 100.0),), max_tokens=8),
        *(
            request(f"s{s}", temperature=1.5, seed=s, logit_bias=((forced, 100.0),), max_tokens=8)
            for s in range(8)
        ),
    )
    for outcome in outcomes.values():
        assert outcome.tokens == [forced] * 8
        assert outcome.finish == "length"


def adjusted(raw: torch.Tensor, prompt: list[int], output: list[int], params: SamplingParams) -> torch.Tensor:
    """What the engine should pick from: ``raw`` logits with ``params``' penalties (vLLM's order), by hand."""
    logits = raw.clone()
    if params.repetition_penalty != 1.0:
        for token in set(prompt) | set(output):
            value = logits[token]
            logits[token] = (
                value / params.repetition_penalty if value > 0 else value * params.repetition_penalty
            )
    for token, count in Counter(output).items():
        logits[token] -= params.frequency_penalty * count + params.presence_penalty
    for token, bias in params.logit_bias:
        logits[token] += bias
    return logits


@pytest.mark.parametrize(
    "penalties",
    [
        {"frequency_penalty": 2.0},
        {"presence_penalty": 1.5},
        {"repetition_penalty": 1.8},
        {"repetition_penalty": 0.6, "frequency_penalty": -0.5},
        {"frequency_penalty": 0.8, "presence_penalty": 0.4, "logit_bias": ((1028, -3.0), (796, 2.0))},
    ],
)
def test_greedy_with_penalties_picks_the_argmax_of_the_penalised_raw_logits(
    tiny_model: LoadedModel, penalties: dict[str, object]
) -> None:
    params = SamplingParams(max_tokens=24, temperature=0.0, **penalties)  # type: ignore[arg-type]
    outcome = run(tiny_model, GenerationRequest(prompt=PROMPT, params=params, request_id="p"))["p"]
    plain = run(tiny_model, request("plain", max_tokens=24))["plain"]
    assert outcome.tokens != plain.tokens  # the penalty changes what greedy picks
    prompt = prompt_ids(tiny_model, PROMPT)
    logits = raw_logits(tiny_model, prompt + outcome.tokens)
    for i, token in enumerate(outcome.tokens):
        step = adjusted(logits[len(prompt) - 1 + i], prompt, outcome.tokens[:i], params)
        assert step[token] >= step.max() - 1e-4, f"step {i}: picked {token}, best {int(step.argmax())}"


def test_min_tokens_holds_back_eos_and_stop_tokens(tiny_model: LoadedModel) -> None:
    eos_first = ((EOS, 100.0),)
    stop_first = ((1000, 100.0),)
    outcomes = run(
        tiny_model,
        request("eos-free", logit_bias=eos_first),
        request("eos-min", logit_bias=eos_first, min_tokens=5),
        request("eos-min-sampled", logit_bias=eos_first, min_tokens=7, temperature=1.0, seed=3),
        request("stop-free", logit_bias=stop_first, stop_token_ids=(1000,)),
        request("stop-min", logit_bias=stop_first, stop_token_ids=(1000,), min_tokens=4),
    )
    # The ending token is reported (its id and log probability), never its text.
    assert outcomes["eos-free"].tokens == [EOS] and outcomes["eos-free"].finish == "stop"
    assert outcomes["stop-free"].tokens == [1000] and outcomes["stop-free"].finish == "stop"
    for rid, wanted, end in (("eos-min", 5, EOS), ("eos-min-sampled", 7, EOS), ("stop-min", 4, 1000)):
        outcome = outcomes[rid]
        assert len(outcome.tokens) == wanted + 1, rid  # held back exactly until min_tokens, then taken
        assert outcome.finish == "stop" and outcome.tokens[-1] == end
        assert EOS not in outcome.tokens[:-1] and 1000 not in outcome.tokens[:-1]


def test_stop_token_ids_end_the_choice_without_their_text(tiny_model: LoadedModel) -> None:
    baseline = run(tiny_model, request("base", max_tokens=20))["base"].tokens
    cut = next(i for i in range(3, len(baseline)) if baseline[i] not in baseline[:i])
    stop = baseline[cut]
    later = next(t for t in baseline[cut + 1 :] if t not in baseline[: cut + 1])
    outcomes = run(
        tiny_model,
        request("stopped", max_tokens=20, stop_token_ids=(later, stop)),
        request("prefix", max_tokens=cut),
    )
    stopped, prefix = outcomes["stopped"], outcomes["prefix"]
    assert stopped.finish == "stop" and prefix.finish == "length"
    assert stopped.tokens == [*baseline[:cut], stop]  # the stop token is reported...
    assert stopped.text == prefix.text  # ...but its text is not part of the output


def test_ignore_eos_generates_past_eos_to_max_tokens(tiny_model: LoadedModel) -> None:
    eos_first = ((EOS, 100.0),)
    outcomes = run(
        tiny_model,
        request("ignored", logit_bias=eos_first, ignore_eos=True, max_tokens=6),
        request("honoured", logit_bias=eos_first, max_tokens=6),
        request("ignored-free", ignore_eos=True, max_tokens=9, temperature=1.0, seed=1),
    )
    assert outcomes["ignored"].tokens == [EOS] * 6 and outcomes["ignored"].finish == "length"
    assert outcomes["honoured"].tokens == [EOS] and outcomes["honoured"].finish == "stop"
    assert len(outcomes["ignored-free"].tokens) == 9 and outcomes["ignored-free"].finish == "length"


# -- batched equals alone ---------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {"id": {"type": "integer", "minimum": 0, "maximum": 99}, "ok": {"type": "boolean"}},
    "required": ["id", "ok"],
    "additionalProperties": False,
}


def mixed_requests() -> list[GenerationRequest]:
    """Requests that use every per-row feature, each differently."""
    return [
        request("plain", "Hi", max_tokens=12),
        request("freq", PROMPT, frequency_penalty=1.5, presence_penalty=0.5, max_tokens=20),
        request("rep", "1 2 3 4 5 6 7 8", repetition_penalty=1.7, max_tokens=14),
        request(
            "bias", "Once upon a time", logit_bias=((1028, -100.0), (796, 4.0), (1500, 2.0)), max_tokens=18
        ),
        request("logprobs", "A much longer prompt that keeps going, so that the padding matters", logprobs=5),
        request(
            "regex",
            "Name:",
            structured=StructuredOutput("regex", r"[A-Z][a-z]{2,8} [0-9]{1,3}"),
            max_tokens=20,
        ),
        request("json", "JSON:", structured=StructuredOutput("json", json.dumps(SCHEMA)), max_tokens=40),
        request("choice", "Pick:", structured=StructuredOutput("choice", '["red", "green", "blue"]')),
        request("min", "x", logit_bias=((EOS, 100.0),), min_tokens=6, stop_token_ids=(1000,)),
        request("echo", "Question: two plus two?", echo=True, prompt_logprobs=3, logprobs=2, max_tokens=6),
        request(
            "grammar-logprobs", "Say:", structured=StructuredOutput("choice", '["yes", "no"]'), logprobs=3
        ),
        request("seeded", PROMPT, temperature=0.8, top_k=40, min_p=0.01, seed=42, frequency_penalty=0.3),
    ]


def test_mixed_batch_gives_each_request_exactly_its_solo_tokens(tiny_model: LoadedModel) -> None:
    solo = {r.request_id: run(tiny_model, r)[r.request_id] for r in mixed_requests()}
    core = make_core(tiny_model)
    batched: dict[str, Outcome] = {}
    mixed = mixed_requests()
    for r in mixed[:5]:
        core.add_request(r)
    for _ in range(3):  # the rest join mid-flight, merging into a running batch
        collect(core, batched)
    for r in mixed[5:]:
        core.add_request(r)
    drain(core, batched)
    assert set(batched) == set(solo)
    for rid, alone in solo.items():
        together = batched[rid]
        assert together.tokens == alone.tokens, rid
        assert together.text == alone.text and together.finish == alone.finish, rid
        assert [t.token_id for t in together.logprobs] == [t.token_id for t in alone.logprobs], rid
        for a, b in zip(together.logprobs, alone.logprobs, strict=True):
            assert a.logprob == pytest.approx(b.logprob, abs=1e-4), rid
            assert [t.token_id for t in a.top] == [t.token_id for t in b.top], rid
    assert re.fullmatch(r"[A-Z][a-z]{2,8} [0-9]{1,3}", solo["regex"].text)
    assert solo["choice"].text in ("red", "green", "blue")
    assert len(solo["min"].tokens) >= 6


# -- log probabilities --------------------------------------------------------------------------


def test_generated_logprobs_match_a_manual_forward_pass(tiny_model: LoadedModel) -> None:
    forced = 1500
    outcomes = run(
        tiny_model,
        request("plain", logprobs=5),
        request("penalised", logprobs=3, frequency_penalty=2.0, logit_bias=((forced, 100.0),), max_tokens=4),
        request("none", logprobs=0, temperature=1.0, seed=5),
    )
    prompt = prompt_ids(tiny_model, PROMPT)
    for rid, k in (("plain", 5), ("penalised", 3), ("none", 0)):
        outcome = outcomes[rid]
        assert len(outcome.logprobs) == len(outcome.tokens) > 0
        scores = torch.log_softmax(raw_logits(tiny_model, prompt + outcome.tokens), dim=-1)
        for i, (token, entry) in enumerate(zip(outcome.tokens, outcome.logprobs, strict=True)):
            raw = scores[len(prompt) - 1 + i]
            assert entry.token_id == token
            assert entry.logprob == pytest.approx(raw[token].item(), abs=1e-4), (rid, i)
            assert len(entry.top) == k
            values = [alt.logprob for alt in entry.top if alt.logprob is not None]
            assert values == sorted(values, reverse=True)
            expected = raw.topk(k) if k else None
            if expected is not None:
                assert values == pytest.approx(expected.values.tolist(), abs=1e-4)
                assert [alt.token_id for alt in entry.top] == expected.indices.tolist()
            if rid == "plain":
                assert entry.top[0].token_id == token  # greedy takes the best alternative
    assert outcomes["penalised"].tokens == [forced] * 4
    assert all(e.logprob is not None and e.logprob < -1.0 for e in outcomes["penalised"].logprobs)


def assert_token_spelling(entry: TokenLogprob, tokenizer: object) -> bool:
    """``token`` is the text of ``bytes``, or ``bytes:\\x..`` for a piece of a character; True for a piece."""
    raw = bytes(entry.bytes)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        assert entry.token == "bytes:" + "".join(f"\\x{b:02x}" for b in raw)
        assert re.fullmatch(r"bytes:(\\x[0-9a-f]{2})+", entry.token)
        return True
    assert entry.token == text
    assert tokenizer.decode([entry.token_id]) == text  # type: ignore[attr-defined]
    return False


def test_token_text_and_bytes_spell_whole_characters_and_name_partial_ones(tiny_model: LoadedModel) -> None:
    prompt = "héllo wörld € 😀 naïve"
    partial = 130  # b"\xc3", the first byte of "é"
    outcomes = run(
        tiny_model,
        request("echo", prompt, echo=True, prompt_logprobs=4, max_tokens=0),
        request("forced", logprobs=3, logit_bias=((partial, 100.0),), max_tokens=2),
    )
    scored = outcomes["echo"].prompt_logprobs
    assert scored is not None
    assert b"".join(bytes(e.bytes) for e in scored) == prompt.encode()  # bytes are exact
    pieces = [assert_token_spelling(e, tiny_model.tokenizer) for e in scored]
    for entry in scored:
        for alt in entry.top:
            assert_token_spelling(alt, tiny_model.tokenizer)
    assert any(pieces) and not all(pieces)  # the prompt has both whole characters and pieces
    forced = outcomes["forced"].logprobs
    assert [e.token for e in forced] == ["bytes:\\xc3"] * 2
    assert [e.bytes for e in forced] == [[0xC3]] * 2


def test_prompt_logprobs_match_a_manual_forward_pass(tiny_model: LoadedModel) -> None:
    prompts = {"short": "Hi there", "long": "Once upon a time, in a land far away, there lived a fox"}
    outcomes = run(
        tiny_model,
        request("short", prompts["short"], echo=True, prompt_logprobs=2, max_tokens=0),
        request("long", prompts["long"], echo=True, prompt_logprobs=3, max_tokens=3, logprobs=1),
    )
    for rid, k in (("short", 2), ("long", 3)):
        outcome, ids = outcomes[rid], prompt_ids(tiny_model, prompts[rid])
        assert outcome.prompt_text == prompts[rid]
        scored = outcome.prompt_logprobs
        assert scored is not None and [e.token_id for e in scored] == ids
        assert scored[0].logprob is None  # nothing predicts the first token
        scores = torch.log_softmax(raw_logits(tiny_model, ids), dim=-1)
        for j in range(1, len(ids)):
            assert scored[j].logprob == pytest.approx(scores[j - 1, ids[j]].item(), abs=1e-4), (rid, j)
            assert [a.token_id for a in scored[j].top] == scores[j - 1].topk(k).indices.tolist()
    short = outcomes["short"]
    assert short.tokens == [] and short.text == "" and short.finish == "length"
    assert len(outcomes["long"].tokens) == 3 and outcomes["long"].finish == "length"
