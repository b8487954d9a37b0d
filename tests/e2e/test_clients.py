"""The client libraries people build on, against a real ``blaze serve`` on SmolLM2-135M.

LangChain (``ChatOpenAI``), instructor, the OpenAI Agents SDK (Chat Completions and Responses
models) and lm-evaluation-harness (``local-completions``) each drive one module-scoped server the
way their users do. Outputs are greedy and bounded (``maxLength``, enums, small ``max_tokens``) so
they end quickly and repeat. Nothing may leave the machine: the hub and tracing switches are set
before the libraries are imported, and a socket guard fails the module on any connection or name
lookup that is not loopback.
"""

from __future__ import annotations

import os

# Set before the libraries are imported: some read them once, at import.
os.environ.update(
    HF_HUB_OFFLINE="1",
    HF_DATASETS_OFFLINE="1",
    TRANSFORMERS_OFFLINE="1",
    HF_HUB_DISABLE_TELEMETRY="1",
    OPENAI_AGENTS_DISABLE_TRACING="1",
    LANGSMITH_TRACING="false",
    LANGCHAIN_TRACING_V2="false",
)

import asyncio
import ipaddress
import json
import math
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import agents
import httpx
import instructor
import jsonschema  # type: ignore[import-untyped]
import lm_eval
import openai
import pytest
import yaml
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from lm_eval.api.instance import Instance
from lm_eval.models.openai_completions import LocalCompletionsAPI
from lm_eval.tasks import TaskManager
from pydantic import BaseModel, Field

from blaze_ai.engines.llm.builtins import materialize

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

KEY = "sk-e2e-clients"
CONFIG = f"""
server:
  host: 127.0.0.1
  api_keys: [{KEY}]
models:
  - name: smol
    kind: llm
    llm: {{source: "builtin:smollm2-135m", max_batch_size: 8}}
"""
TASKS = Path(__file__).parent / "lm_eval_tasks"
CAPITAL = "What is the capital of France?"
# json_object only makes the output a JSON object: the prompt has to ask for the keys.
JSON_ASK = f"{CAPITAL} Answer with JSON with the keys name and country."
WEATHER = "What is the weather in Paris?"


class City(BaseModel):
    """A city and the country it is in."""

    name: str = Field(min_length=1, max_length=12, description="the city")
    country: str = Field(min_length=1, max_length=12, description="the country it is in")


CITY_SCHEMA = City.model_json_schema()


@tool
def get_weather(city: Literal["Paris", "London", "Tokyo"], unit: Literal["celsius", "fahrenheit"]) -> str:
    """Get the current weather in a city."""
    return f"18 degrees {unit} and sunny in {city}"


WEATHER_SCHEMA = get_weather.tool_call_schema.model_json_schema()


# -- the server, and no network --------------------------------------------------------------


def _loopback(host: Any) -> bool:
    """Whether a connection or lookup for ``host`` stays on this machine (None: not an address)."""
    if host is None:
        return True
    name = host.decode() if isinstance(host, bytes) else str(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name.split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(scope="module", autouse=True)
def loopback_only() -> Iterator[list[str]]:
    """Refuse (and record) every connection and name lookup that leaves loopback."""
    attempts: list[str] = []
    real_connect, real_lookup = socket.socket.connect, socket.getaddrinfo

    def check(sock: socket.socket | None, host: Any) -> None:
        inet = sock is None or sock.family in (socket.AF_INET, socket.AF_INET6)
        if inet and not _loopback(host):
            attempts.append(str(host))
            raise ConnectionRefusedError(f"test_clients: no network, refused {host!r}")

    def connect(self: socket.socket, address: Any) -> None:
        check(self, address[0] if isinstance(address, tuple) else None)
        real_connect(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        check(None, host)
        return real_lookup(host, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", connect)
        patch.setattr(socket, "getaddrinfo", getaddrinfo)
        yield attempts
    assert attempts == [], f"something tried to reach the network: {attempts}"


def test_the_network_guard_refuses_other_hosts(loopback_only: list[str]) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.getaddrinfo("huggingface.co", 443)  # refused before any lookup
    assert loopback_only.pop() == "huggingface.co"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, gateway: Any) -> Iterator[Any]:
    with gateway(CONFIG, tmp_path_factory.mktemp("clients")) as process:
        yield process


@pytest.fixture(scope="module")
def v1(server: Any) -> str:
    return f"{server.base_url}/v1"


# -- LangChain -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chat_model(v1: str) -> ChatOpenAI:
    return ChatOpenAI(
        base_url=v1, api_key=KEY, model="smol", temperature=0, max_tokens=60, max_retries=0, timeout=120
    )


@pytest.mark.parametrize("method", ["json_schema", "function_calling", "json_mode"])
def test_langchain_structured_output(chat_model: ChatOpenAI, method: str) -> None:
    ask = JSON_ASK if method == "json_mode" else CAPITAL
    structured: Any = chat_model.with_structured_output(City, method=method, include_raw=True)
    out = structured.invoke(ask)
    raw: AIMessage = out["raw"]
    assert out["parsing_error"] is None, raw
    city = out["parsed"]
    assert isinstance(city, City)
    if method == "function_calling":  # a forced call of a tool named after the model
        assert raw.response_metadata["finish_reason"] == "tool_calls"
        assert [call["name"] for call in raw.tool_calls] == ["City"]
        args = raw.tool_calls[0]["args"]
        jsonschema.validate(args, CITY_SCHEMA)
        assert City.model_validate(args) == city
        return
    assert raw.response_metadata["finish_reason"] == "stop"  # it ended by itself, not by max_tokens
    data = json.loads(str(raw.content))
    assert isinstance(data, dict)  # all that json_mode promises; the prompt got the keys right too
    jsonschema.validate(data, CITY_SCHEMA)
    assert City.model_validate(data) == city


@pytest.mark.parametrize(
    ("choice", "extra"),
    [("get_weather", {}), ("any", {"parallel_tool_calls": False})],
    ids=["named", "any"],
)
def test_langchain_forced_tool_call_then_tool_result(
    chat_model: ChatOpenAI, choice: str, extra: dict[str, Any]
) -> None:
    question = HumanMessage(WEATHER)
    message = chat_model.bind_tools([get_weather], tool_choice=choice, **extra).invoke([question])
    assert isinstance(message, AIMessage)
    assert message.response_metadata["finish_reason"] == "tool_calls"
    assert len(message.tool_calls) == 1 and not message.invalid_tool_calls
    call = message.tool_calls[0]
    assert call["name"] == "get_weather" and call["id"]
    jsonschema.validate(call["args"], WEATHER_SCHEMA)
    result = get_weather.invoke(call["args"])
    assert result.endswith(f"sunny in {call['args']['city']}")
    # Turn 2: the call and its result go back (an assistant turn with tool_calls, a tool message).
    short = chat_model.bind_tools([get_weather], max_tokens=16)
    answer = short.invoke([question, message, ToolMessage(result, tool_call_id=call["id"])])
    assert isinstance(answer, AIMessage)
    assert answer.response_metadata["finish_reason"] in ("stop", "length", "tool_calls")
    assert answer.content or answer.tool_calls


# -- instructor ------------------------------------------------------------------------------


def _instructor(v1: str, mode: instructor.Mode, ask: str, max_tokens: int) -> tuple[City, Any]:
    """instructor's parsed model and the chat completion it came from."""
    with openai.OpenAI(base_url=v1, api_key=KEY, max_retries=0, timeout=120) as raw:
        client = instructor.from_openai(raw, mode=mode)
        return client.chat.completions.create_with_completion(
            model="smol",
            response_model=City,
            messages=[{"role": "user", "content": ask}],
            max_retries=0,
            max_tokens=max_tokens,
            temperature=0,
        )


def _check_city(city: City, completion: Any, reason: str) -> None:
    assert isinstance(city, City)
    jsonschema.validate(city.model_dump(), CITY_SCHEMA)
    assert completion.choices[0].finish_reason == reason
    assert city.name == "Paris"  # greedy, and named in the prompt (JSON) or well known (TOOLS)


def test_instructor_json_mode(v1: str) -> None:
    # Mode.JSON: response_format json_object, with the schema in a system message.
    city, completion = _instructor(v1, instructor.Mode.JSON, JSON_ASK, max_tokens=40)
    _check_city(city, completion, "stop")
    assert json.loads(completion.choices[0].message.content) == city.model_dump()


@pytest.fixture(scope="module")
def instructor_tools(v1: str) -> tuple[City, Any]:
    return _instructor(v1, instructor.Mode.TOOLS, CAPITAL, max_tokens=80)


def test_instructor_tools_mode(instructor_tools: tuple[City, Any]) -> None:
    city, completion = instructor_tools
    _check_city(city, completion, "tool_calls")
    (call,) = completion.choices[0].message.tool_calls
    assert call.function.name == "City"
    jsonschema.validate(json.loads(call.function.arguments), CITY_SCHEMA)


def test_instructor_tool_arguments_hold_only_declared_properties(instructor_tools: tuple[City, Any]) -> None:
    (call,) = instructor_tools[1].choices[0].message.tool_calls
    assert set(json.loads(call.function.arguments)) == {"name", "country"}, call.function.arguments


# -- OpenAI Agents SDK -----------------------------------------------------------------------


def _run_weather_agent(v1: str, responses_api: bool, settings: agents.ModelSettings) -> dict[str, Any]:
    """Run a one-tool agent that stops on its first tool call; what the tool saw, and the result."""
    seen: list[tuple[Any, Any]] = []

    @agents.function_tool
    def forecast(city: Literal["Paris", "London", "Tokyo"], days: int) -> str:
        """Get the weather forecast for a city for a number of days."""
        seen.append((city, days))
        return f"Sunny in {city} for {days} days"

    client = openai.AsyncOpenAI(base_url=v1, api_key=KEY, max_retries=0, timeout=120)
    kind = agents.OpenAIResponsesModel if responses_api else agents.OpenAIChatCompletionsModel
    agent = agents.Agent(
        name="forecaster",
        instructions="Use the tool.",
        tools=[forecast],
        model=kind(model="smol", openai_client=client),
        model_settings=settings,
        tool_use_behavior="stop_on_first_tool",
    )
    agents.set_tracing_disabled(True)

    # run_sync runs on the thread's default loop, keeps it, and shuts its async generators down after
    # each run, so a second run on the same loop warns (an error here) when httpx starts one. Each
    # run gets a thread and a loop of its own, and the client is closed on that loop.
    def run() -> agents.RunResult:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            return agents.Runner.run_sync(agent, "What is the weather in Paris for the next 3 days?")
        finally:
            loop.run_until_complete(client.close())
            loop.close()

    with ThreadPoolExecutor(1) as pool:
        result = pool.submit(run).result()
    return {"seen": seen, "result": result}


def _check_tool_ran(run: dict[str, Any]) -> None:
    assert len(run["seen"]) == 1
    city, days = run["seen"][0]
    assert city in ("Paris", "London", "Tokyo") and type(days) is int
    assert run["result"].final_output == f"Sunny in {city} for {days} days"


@pytest.fixture(scope="module")
def chat_agent_run(v1: str) -> dict[str, Any]:
    return _run_weather_agent(
        v1, False, agents.ModelSettings(tool_choice="required", max_tokens=40, temperature=0)
    )


def test_agents_chat_completions_model_calls_the_tool(chat_agent_run: dict[str, Any]) -> None:
    _check_tool_ran(chat_agent_run)


def test_agents_chat_required_call_cut_by_max_tokens_is_not_text(chat_agent_run: dict[str, Any]) -> None:
    (response,) = chat_agent_run["result"].raw_responses
    kinds = [item.type for item in response.output]
    assert kinds == ["function_call"], response.output


def test_agents_responses_model_calls_the_tool(v1: str) -> None:
    # parallel_tool_calls=False: otherwise the 135M model starts a second call that max_tokens cuts,
    # and /v1/responses (rightly) answers status "incomplete", which the SDK raises on.
    settings = agents.ModelSettings(
        tool_choice="required", max_tokens=40, temperature=0, parallel_tool_calls=False
    )
    _check_tool_ran(_run_weather_agent(v1, True, settings))


# -- lm-evaluation-harness -------------------------------------------------------------------


@pytest.fixture(scope="module")
def task_manager(tmp_path_factory: pytest.TempPathFactory) -> TaskManager:
    """The repository's tasks with their data file as an absolute path and a private datasets cache."""
    folder = tmp_path_factory.mktemp("lm_eval_tasks")
    for source in TASKS.glob("*.yaml"):
        config = yaml.safe_load(source.read_text())
        config["dataset_kwargs"] = {
            "data_files": {"test": str(TASKS / "easy_qa.jsonl")},
            "cache_dir": str(folder / "datasets"),
        }
        (folder / source.name).write_text(yaml.safe_dump(config))
    return TaskManager(include_path=str(folder))


def _model_args(server: Any, backend: str) -> str:
    tokenizer = (
        f"tokenizer={materialize('builtin:smollm2-135m')}"
        if backend == "huggingface"
        else f"auth_token={KEY}"
    )
    return (
        f"model=smol,base_url={server.base_url}/v1/completions,tokenizer_backend={backend},{tokenizer},"
        "num_concurrent=1,max_retries=1,tokenized_requests=True"
    )


def _evaluate(server: Any, tasks: TaskManager, backend: str, names: list[str], limit: int) -> dict[str, Any]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPENAI_API_KEY", KEY)  # local-completions sends it as the bearer token
        results = lm_eval.simple_evaluate(
            model="local-completions",
            model_args=_model_args(server, backend),
            tasks=names,
            task_manager=tasks,
            limit=limit,
            log_samples=True,
            bootstrap_iters=0,
        )
    assert results is not None
    return results


@pytest.fixture(scope="module")
def evaluation(server: Any, task_manager: TaskManager) -> dict[str, Any]:
    return _evaluate(server, task_manager, "huggingface", ["blaze_easy_mc", "blaze_easy_gen"], limit=8)


def test_lm_eval_multiple_choice(evaluation: dict[str, Any]) -> None:
    metrics = evaluation["results"]["blaze_easy_mc"]
    assert 0.0 <= metrics["acc,none"] <= 1.0 and 0.0 <= metrics["acc_norm,none"] <= 1.0
    assert metrics["acc,none"] > 0.25  # 4 choices; SmolLM2 gets 7 of 8 of these easy ones
    samples = evaluation["samples"]["blaze_easy_mc"]
    assert len(samples) == 8
    for sample in samples:
        scores = [ll for ll, _greedy in sample["filtered_resps"]]
        assert len(scores) == 4 and all(math.isfinite(s) and s < 0 for s in scores)
        assert sample["acc"] == float(scores.index(max(scores)) == sample["target"])


def test_lm_eval_generate_until(evaluation: dict[str, Any]) -> None:
    metrics = evaluation["results"]["blaze_easy_gen"]
    assert 0.0 <= metrics["exact_match,none"] <= 1.0
    samples = evaluation["samples"]["blaze_easy_gen"]
    assert len(samples) == 8
    texts = [sample["filtered_resps"][0] for sample in samples]
    assert all("\n" not in text for text in texts) and any(text.strip() for text in texts)
    assert metrics["exact_match,none"] == pytest.approx(sum(s["exact_match"] for s in samples) / 8)
    assert metrics["exact_match,none"] > 0  # " blue", " Paris", " cat" ... after one worked example


CHAT_CONTEXT = f"<|im_start|>user\n{CAPITAL}<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize(
    ("context", "continuation"),
    [
        pytest.param("Question: What is 2 + 2?\nAnswer:", " 4", id="mc"),
        pytest.param(
            CHAT_CONTEXT,
            "The capital of France is Paris.",
            id="eos-next",
        ),
    ],
)
def test_lm_eval_loglikelihood_matches_direct_scoring(server: Any, context: str, continuation: str) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPENAI_API_KEY", KEY)
        lm = LocalCompletionsAPI.create_from_arg_string(_model_args(server, "huggingface"))
        ((score, _greedy),) = lm.loglikelihood([Instance("loglikelihood", {}, (context, continuation), 0)])
    head = lm.tok_encode(context)
    ids = lm.tok_encode(context + continuation)
    assert ids[: len(head)] == head
    body = {"model": "smol", "prompt": ids, "echo": True, "logprobs": 1, "max_tokens": 0}
    auth = {"Authorization": f"Bearer {KEY}"}
    reply = httpx.post(f"{server.base_url}/v1/completions", json=body, headers=auth, timeout=120)
    assert reply.status_code == 200, reply.text
    data = reply.json()
    logprobs = data["choices"][0]["logprobs"]["token_logprobs"]
    assert data["usage"] == {"prompt_tokens": len(ids), "completion_tokens": 0, "total_tokens": len(ids)}
    assert len(logprobs) == len(ids) and logprobs[0] is None
    # lm-eval asks for one generated token, the direct request for none: the same prompt, scored in a
    # prefill batch of another shape, agrees to float32 rounding.
    assert score == pytest.approx(sum(logprobs[len(head) :]), abs=2e-3)


def test_lm_eval_remote_tokenizer(server: Any, task_manager: TaskManager) -> None:
    results = _evaluate(server, task_manager, "remote", ["blaze_easy_mc"], limit=2)
    assert 0.0 <= results["results"]["blaze_easy_mc"]["acc,none"] <= 1.0
