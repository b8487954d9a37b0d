"""Engine replicas on a real Ray cluster behind the router (issue 10).

The e2e tests start one Ray head on 127.0.0.1 with 2 CPUs (``ray start --head --block`` in its own
process group, stopped by signalling that group) and two replicas of ``builtin:tiny-llama`` on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from blaze_ai.distributed import RAY_INSTALL, RayReplicaConfig, build_ray_replicas, connect, disconnect
from blaze_ai.engines.llm import LLMConfig
from blaze_ai.engines.requests import GenerationRequest, SamplingParams
from blaze_ai.engines.router import Router, RouterConfig
from blaze_ai.errors import ConfigError, ContextLengthError, EngineFailureError

RAY = Path(sys.executable).with_name("ray")
ENGINE = LLMConfig(source="builtin:tiny-llama", max_context_length=512, max_batch_size=8)
RAY_CONFIG = RayReplicaConfig(replicas=2, num_cpus=0.5, max_restarts=5, probe_timeout_s=5.0)
ROUTER = RouterConfig(
    strategy="round_robin", health_fall=1, health_rise=1, try_timeout_s=120.0, max_retries=2
)


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _head_command(temp_dir: str) -> list[str]:
    gcs, client, agent, agent_grpc, metrics, env_agent = _free_ports(6)
    return [
        str(RAY), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={gcs}",
        "--num-cpus=2", "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats",
        f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent}",
        f"--dashboard-agent-grpc-port={agent_grpc}", f"--metrics-export-port={metrics}",
        f"--runtime-env-agent-port={env_agent}", f"--temp-dir={temp_dir}",
    ]  # fmt: skip


def _wait_started(proc: subprocess.Popen[str], timeout_s: float) -> None:
    """Read ``ray start`` output until it reports the runtime started (or fail with the output)."""
    lines: list[str] = []
    started = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Ray runtime started" in line:
                started.set()

    threading.Thread(target=read, daemon=True).start()
    if not started.wait(timeout_s):
        raise RuntimeError("ray start --head did not start:\n" + "".join(lines[-40:]))


def _stop_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM the head's process group (Ray shuts down cleanly), then SIGKILL what is left of it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)
    deadline = time.monotonic() + 10
    with contextlib.suppress(ProcessLookupError):
        while time.monotonic() < deadline:  # until no process of the group is left
            os.killpg(proc.pid, signal.SIGKILL)
            proc.poll()  # reaps the leader, which would otherwise keep the group alive
            time.sleep(0.2)
    if proc.stdout is not None:
        proc.stdout.close()


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A one-node Ray cluster on loopback; yields its address and joins it from this process."""
    env = {
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # keeps Ray's traffic off other addresses
        # Loopback only, so no token; and "disabled" matches what a Ray imported earlier in this
        # process assumes for an explicit address (it reads RAY_AUTH_MODE once).
        "RAY_AUTH_MODE": "disabled",
    }
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    import ray  # noqa: F401  (CI installs it: a missing Ray must fail here, not skip)

    temp_dir = tempfile.mkdtemp(prefix="blzray-", dir="/tmp")
    command = _head_command(temp_dir)
    address = f"127.0.0.1:{command[5].split('=')[1]}"
    start = time.monotonic()
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        _wait_started(proc, timeout_s=120)
        resources = connect(address)
        print(f"\nray head + connect took {time.monotonic() - start:.1f}s; resources {resources}")
        assert resources["CPU"] == 2.0
        yield address
    finally:
        disconnect()
        _stop_group(proc)
        shutil.rmtree(temp_dir, ignore_errors=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def replicas(ray_cluster: str) -> list[Any]:
    return build_ray_replicas("tiny", "llm", ENGINE, RAY_CONFIG)


async def _until_ready(replicas: list[Any]) -> None:
    """Wait until every replica's engine runs and passes its probe."""
    await asyncio.gather(*(r.start() for r in replicas))
    assert all(await asyncio.gather(*(r.probe() for r in replicas)))


def _request(prompt: str, max_tokens: int = 12) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, params=SamplingParams(max_tokens=max_tokens, temperature=0.0))


async def _collect(router: Router, request: GenerationRequest) -> list[Any]:
    return [delta async for delta in router.stream(request)]


@pytest.mark.e2e
async def test_two_replicas_serve_concurrent_requests_streamed_and_not(replicas: list[Any]) -> None:
    await _until_ready(replicas)
    router = Router(replicas, ROUTER)
    prompts = [f"The number {i} is" for i in range(8)]
    results = await asyncio.gather(*(router.execute(_request(p)) for p in prompts))
    streams = await asyncio.gather(*(_collect(router, _request(p)) for p in prompts[:4]))

    for result in results:
        assert result.completion_tokens > 0 and result.choices[0].text
    for result, deltas in zip(results[:4], streams, strict=True):
        # In pieces, not one lump (a reader that falls behind gets the tokens queued meanwhile merged)
        assert 1 < len(deltas) <= result.completion_tokens
        assert sum(len(d.token_ids) for d in deltas) == result.completion_tokens
        assert "".join(d.text for d in deltas) == result.choices[0].text  # greedy: same text
        assert deltas[-1].finish_reason is not None
    stats = router.stats()["replicas"]
    assert all(stats[r.name]["successes"] >= 5 for r in replicas), stats
    pids = {(await r.stats())["pid"] for r in replicas}
    assert len(pids) == 2  # two separate actor processes did the work


@pytest.mark.e2e
async def test_blaze_errors_raised_in_an_actor_arrive_as_the_same_types(replicas: list[Any]) -> None:
    await _until_ready(replicas)
    too_long = _request("word " * 1000)
    with pytest.raises(ContextLengthError) as caught:
        await replicas[0].execute(too_long)
    assert type(caught.value) is ContextLengthError and caught.value.code == "context_length_exceeded"
    with pytest.raises(ContextLengthError):
        [d async for d in replicas[1].stream(too_long)]
    with pytest.raises(EngineFailureError, match="replica tiny-ray-0 failed"):
        await replicas[0].execute("not a request")  # a foreign error inside the actor
    router = Router(replicas, ROUTER)
    with pytest.raises(ContextLengthError):
        await router.execute(too_long)
    assert router.retries == 0  # a client error is not retried on the other replica


@pytest.mark.e2e
async def test_killing_an_actor_under_load_loses_no_request_and_it_rejoins(replicas: list[Any]) -> None:
    import ray

    await _until_ready(replicas)
    victim = replicas[0]
    old_pid = (await victim.stats())["pid"]
    router = Router(replicas, ROUTER)
    load = [asyncio.create_task(router.execute(_request(f"Request {i} says", 80))) for i in range(16)]
    for _ in range(600):  # kill it while it is generating
        if (await victim.stats()).get("running", 0):
            break
        await asyncio.sleep(0.05)
    ray.kill(victim.actor, no_restart=False)
    results = await asyncio.gather(*load)

    assert all(r.completion_tokens > 0 for r in results)  # none lost
    assert router.stats()["replicas"][victim.name]["errors"] >= 1  # the kill did hit requests...
    assert router.retries >= 1  # ...and they were retried on the survivor
    await router.health.check_once()  # the restarted actor is starting its engine: not ready
    assert not router.health.is_healthy(victim.name)
    deadline = time.monotonic() + 120
    while not router.health.is_healthy(victim.name):
        assert time.monotonic() < deadline, router.health.snapshot()
        await asyncio.sleep(0.3)
        await router.health.check_once()
    assert (await victim.stats())["pid"] != old_pid  # Ray restarted it in a new process
    before = router.stats()["replicas"][victim.name]["successes"]
    await asyncio.gather(*(router.execute(_request(f"Again {i}")) for i in range(4)))
    assert router.stats()["replicas"][victim.name]["successes"] > before  # it serves again


@pytest.mark.e2e
async def test_closing_a_stream_stops_generation_in_the_actor(replicas: list[Any]) -> None:
    await _until_ready(replicas)
    replica = replicas[1]
    before = (await replica.stats())["generated_tokens"]
    stream = replica.stream(_request("Once upon a time", 400))
    assert (await anext(stream)).text and (await anext(stream)).text
    await stream.aclose()
    for _ in range(200):
        stats = await replica.stats()
        if stats["running"] == 0:
            break
        await asyncio.sleep(0.05)
    assert stats["running"] == 0
    assert stats["generated_tokens"] - before < 400  # aborted, not run to max_tokens


# -- without a cluster -------------------------------------------------------------------------
def test_missing_ray_fails_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    with pytest.raises(ConfigError, match=r"pip install 'blaze-ai\[ray\]'") as caught:
        build_ray_replicas("m", "fake", None, RayReplicaConfig())
    assert RAY_INSTALL in str(caught.value)
    with pytest.raises(ConfigError, match="not installed"):
        connect("127.0.0.1:6379")
    monkeypatch.delitem(sys.modules, "blaze_ai.distributed.ray_replica", raising=False)
    with pytest.raises(ConfigError, match="ray"):
        import blaze_ai.distributed.ray_replica  # noqa: F401


def test_a_config_without_ray_imports_no_ray() -> None:
    code = (
        "import sys, blaze_ai.distributed, blaze_ai.config as c\n"
        "c.parse_config({'models': [{'name': 'm', 'kind': 'fake'}]})\n"
        "print('ray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_ray_replica_config_validates_and_maps_to_actor_options() -> None:
    options = RayReplicaConfig(num_cpus=2, num_gpus=0.5, memory_mb=1024, scheduling="default").actor_options()
    assert options["memory"] == 1024 * 1024 * 1024 and options["num_gpus"] == 0.5
    assert options["scheduling_strategy"] == "DEFAULT" and options["max_task_retries"] == 0
    assert "memory" not in RayReplicaConfig().actor_options()
    for bad in (
        {"replicas": 0},
        {"num_gpus": -1},
        {"memory_mb": 0},
        {"max_restarts": -2},
        {"scheduling": "x"},
    ):
        with pytest.raises(ValueError):
            RayReplicaConfig(**bad)
