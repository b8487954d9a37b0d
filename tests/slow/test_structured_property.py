"""Constrained decoding on the real SmolLM2-135M: random JSON Schemas always give valid, finished JSON.

Hypothesis draws :data:`SCHEMAS` (40) random schemas per run: nested objects up to three
levels deep, arrays with ``minItems``/``maxItems``, enums, integers and ``multipleOf`` numbers within
``minimum``/``maximum``, booleans, nulls, strings with ``maxLength``, required and optional
properties, ``additionalProperties: false``. Every schema runs twice, greedy and sampled (80 rows),
as one continuous batch through one :class:`EngineCore`, and every output must finish ("stop") within
a ``max_tokens`` of the most bytes a valid output can have (each token is at least one byte), then
parse and validate. (Hypothesis collects the schemas, then the batch runs once: one generation per
example would take minutes, and a single example holding a list of schemas is hypothesis's minimal
one, every schema alike. A failure prints each failing schema and output, which reproduce it.)

Left out of the must-finish set: numbers without ``multipleOf``. llguidance lets their fraction run
on (``3.000000000...`` is valid for any ``minimum``/``maximum``), so nothing bounds their length; a
separate test checks that those that finish are valid.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from blaze_ai.engines.llm import LLMConfig, LoadedModel, load_model
from blaze_ai.engines.llm.core import EngineCore
from blaze_ai.engines.requests import GenerationRequest, SamplingParams, StructuredOutput

os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytestmark = [pytest.mark.slow]

SMOLLM2 = "builtin:smollm2-135m"
SCHEMAS = 40


def collect(strategy: st.SearchStrategy[Any], count: int) -> list[Any]:
    """``count`` examples of ``strategy``, as hypothesis generates them (varied, the simplest first)."""
    found: list[Any] = []

    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        phases=(Phase.generate,),
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def draw(example: Any) -> None:
        found.append(example)

    draw()
    assert len(found) >= count * 3 // 4, "hypothesis gave too few examples"
    return found[:count]


# -- schemas, and the most bytes a valid output of each can take ---------------------------------

NAMES = st.from_regex(r"[a-z][a-z_]{0,7}", fullmatch=True)
WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ABC-", min_size=1, max_size=8)


@st.composite
def integers(draw: st.DrawFn) -> dict[str, Any]:
    low = draw(st.integers(-1000, 1000))
    return {"type": "integer", "minimum": low, "maximum": low + draw(st.integers(0, 2000))}


@st.composite
def stepped_numbers(draw: st.DrawFn) -> dict[str, Any]:
    low = draw(st.integers(-50, 50))
    high = low + draw(st.integers(1, 100))
    return {
        "type": "number",
        "minimum": low,
        "maximum": high,
        "multipleOf": draw(st.sampled_from([0.5, 0.25])),
    }


@st.composite
def strings(draw: st.DrawFn) -> dict[str, Any]:
    longest = draw(st.integers(0, 10))
    schema: dict[str, Any] = {"type": "string", "maxLength": longest}
    if draw(st.booleans()):
        schema["minLength"] = draw(st.integers(0, longest))
    return schema


ENUMS = st.lists(st.one_of(WORDS, st.integers(-99, 999)), min_size=1, max_size=4, unique=True).map(
    lambda values: {"enum": values}
)
LEAVES = st.one_of(
    integers(),
    stepped_numbers(),
    strings(),
    ENUMS,
    st.just({"type": "boolean"}),
    st.just({"type": "null"}),
)


@st.composite
def objects(draw: st.DrawFn, values: st.SearchStrategy[dict[str, Any]], most: int = 3) -> dict[str, Any]:
    properties = draw(st.dictionaries(NAMES, values, min_size=1, max_size=most))
    required = [name for name in properties if draw(st.integers(0, 3)) > 0]  # mostly required
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


@st.composite
def arrays(draw: st.DrawFn, items: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    most = draw(st.integers(0, 3))
    return {"type": "array", "items": draw(items), "minItems": draw(st.integers(0, most)), "maxItems": most}


LEVEL1 = st.one_of(LEAVES, objects(LEAVES), arrays(LEAVES))
LEVEL2 = st.one_of(LEAVES, objects(LEVEL1), arrays(LEVEL1))
ROOTS = objects(LEVEL2, most=4)


def max_bytes(schema: dict[str, Any]) -> int:
    """The most UTF-8 bytes of a compact JSON value of ``schema`` (a string character may be a 6-byte
    escape)."""
    if "enum" in schema:
        return max(len(json.dumps(v).encode()) for v in schema["enum"])
    kind = schema["type"]
    if kind == "object":
        members = [len(name) + 4 + max_bytes(value) for name, value in schema["properties"].items()]
        return 2 + sum(members) + 2 * max(len(members) - 1, 0)
    if kind == "array":
        return 2 + int(schema["maxItems"]) * (max_bytes(schema["items"]) + 2)
    if kind == "string":
        return 2 + 6 * int(schema["maxLength"])
    if kind in ("integer", "number"):
        digits = max(len(str(abs(schema["minimum"]))), len(str(abs(schema["maximum"]))))
        return digits + 1 + (6 if kind == "number" else 0)  # sign; point and fraction digits
    return int({"boolean": 5, "null": 4}[kind])


# -- the engine --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2() -> LoadedModel:
    return load_model(LLMConfig(source=SMOLLM2, device="cpu"))


@dataclass
class Finished:
    text: str
    finish: str | None


def generate(model: LoadedModel, requests: list[GenerationRequest]) -> dict[str, Finished]:
    """Run ``requests`` as one continuous batch; their text and finish reasons by request id."""
    config = LLMConfig(source=SMOLLM2, device="cpu", max_batch_size=128, max_tokens_in_flight=1 << 16)
    core = EngineCore(model, config)
    for request in requests:
        core.add_request(request)
    done = {r.request_id: Finished("", None) for r in requests}
    for _ in range(100_000):
        if not core.has_work():
            return done
        for output in core.step():
            assert output.error is None, f"{output.request_id}: {output.error}"
            assert output.delta is not None
            done[output.request_id].text += output.delta.text
            done[output.request_id].finish = output.delta.finish_reason or done[output.request_id].finish
    raise AssertionError("the engine did not finish")


def json_request(rid: str, schema: dict[str, Any], max_tokens: int, **sampling: Any) -> GenerationRequest:
    # A short prompt: the grammar alone makes the shape, and 80 long prompts would cost most of the run.
    messages = [{"role": "user", "content": "Describe a thing as a JSON object."}]
    spec = StructuredOutput("json", json.dumps(schema))
    params = SamplingParams(max_tokens=max_tokens, structured=spec, **sampling)
    return GenerationRequest(messages=messages, params=params, request_id=rid)


def variants(
    schemas: list[dict[str, Any]], slack: int = 2
) -> Iterator[tuple[str, dict[str, Any], GenerationRequest]]:
    """Each schema greedy and sampled (seeded), with ``max_tokens`` from its bounds."""
    for i, schema in enumerate(schemas):
        bound = max_bytes(schema) + slack
        yield f"greedy-{i}", schema, json_request(f"greedy-{i}", schema, bound, temperature=0.0)
        yield f"sampled-{i}", schema, json_request(f"sampled-{i}", schema, bound, temperature=1.0, seed=i)


def problems(schema: dict[str, Any], got: Finished, *, must_finish: bool) -> list[str]:
    """What is wrong with one output (empty when it is a finished, valid instance of ``schema``)."""
    if got.finish != "stop":
        return [f"finish {got.finish!r}"] if must_finish else []
    try:
        value = json.loads(got.text)
    except ValueError as exc:
        return [f"not JSON: {exc}"]
    errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(value)]
    return [f"invalid: {'; '.join(errors)}"] if errors else []


def test_random_bounded_schemas_always_finish_with_valid_json(smollm2: LoadedModel) -> None:
    schemas = collect(ROOTS, SCHEMAS)
    for schema in schemas:
        jsonschema.Draft202012Validator.check_schema(schema)
    cases = list(variants(schemas))
    results = generate(smollm2, [request for _, _, request in cases])
    failures = [
        f"{rid}: {problem}\n  schema {json.dumps(schema)}\n  output {results[rid].text!r}"
        for rid, schema, _ in cases
        for problem in problems(schema, results[rid], must_finish=True)
    ]
    assert not failures, "\n".join(failures)
    assert len(results) == 2 * len(schemas)
    assert len({json.dumps(schema) for schema in schemas}) > len(schemas) // 2  # really varied


@st.composite
def free_numbers(draw: st.DrawFn) -> dict[str, Any]:
    low = draw(st.integers(-100, 100))
    number = {"type": "number", "minimum": low, "maximum": low + draw(st.integers(1, 500))}
    return {"type": "object", "properties": {"x": number}, "required": ["x"], "additionalProperties": False}


def test_numbers_without_multiple_of_are_valid_when_they_finish(smollm2: LoadedModel) -> None:
    schemas = collect(free_numbers(), 8)
    cases = list(variants(schemas, slack=24))
    results = generate(smollm2, [request for _, _, request in cases])
    failures = [
        f"{rid}: {problem} for {json.dumps(schema)}: {results[rid].text!r}"
        for rid, schema, _ in cases
        for problem in problems(schema, results[rid], must_finish=False)
    ]
    assert not failures, "\n".join(failures)
    assert sum(r.finish == "stop" for r in results.values()) >= len(cases) // 2  # not a vacuous check


NAME_AND_NUMBER = r"[A-Z][a-z]{2,8} [0-9]{1,3}"
CHOICES = ["yes", "yes please", "no", "maybe later", "Paris"]


def test_regex_and_choice_outputs_match_exactly(smollm2: LoadedModel) -> None:
    ask = [
        "Name a person and their age.",
        "What is the capital of France? Answer with a word and a number.",
        "Say hello.",
    ]
    requests = []
    for i, content in enumerate(ask):
        for mode, sampling in (
            ("greedy", {"temperature": 0.0}),
            ("sampled", {"temperature": 1.2, "seed": i}),
        ):
            for kind, spec in (("regex", NAME_AND_NUMBER), ("choice", json.dumps(CHOICES))):
                params = SamplingParams(max_tokens=16, structured=StructuredOutput(kind, spec), **sampling)  # type: ignore[arg-type]
                messages = [{"role": "user", "content": content}]
                requests.append(
                    GenerationRequest(messages=messages, params=params, request_id=f"{kind}-{mode}-{i}")
                )
    results = generate(smollm2, requests)
    for rid, got in results.items():
        assert got.finish == "stop", (rid, got)
        if rid.startswith("regex"):
            assert re.fullmatch(NAME_AND_NUMBER, got.text), (rid, got.text)
        else:
            assert got.text in CHOICES, (rid, got.text)
