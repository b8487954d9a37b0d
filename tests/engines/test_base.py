"""Engine statuses, their transitions and the engine protocols."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from blaze_ai.engines import (
    ALLOWED_TRANSITIONS,
    Engine,
    EngineStatus,
    Executable,
    FakeEngine,
    HealthCheckable,
    Lifecycle,
    transition,
)
from blaze_ai.engines.base import InvalidTransitionError

S = EngineStatus
ALLOWED = sorted((a, b) for a, targets in ALLOWED_TRANSITIONS.items() for b in targets)
DISALLOWED = sorted(
    (a, b) for a, b in itertools.product(S, S) if a is not b and b not in ALLOWED_TRANSITIONS[a]
)


def test_every_status_has_a_row() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(S)


@pytest.mark.parametrize(("current", "new"), ALLOWED)
def test_allowed_transition_returns_the_new_status(current: EngineStatus, new: EngineStatus) -> None:
    assert transition(current, new) is new


@pytest.mark.parametrize(("current", "new"), DISALLOWED)
def test_disallowed_transition_raises(current: EngineStatus, new: EngineStatus) -> None:
    with pytest.raises(InvalidTransitionError, match=f"from {current.value} to {new.value}"):
        transition(current, new)


def test_disallowed_sample_includes_the_dangerous_ones() -> None:
    for pair in [
        (S.STOPPED, S.READY),  # must go through INITIALIZING
        (S.QUARANTINED, S.READY),  # only an operator restart lifts a quarantine
        (S.DRAINING, S.READY),
        (S.RECOVERING, S.READY),
        (S.INITIALIZING, S.DEGRADED),
    ]:
        assert pair in DISALLOWED


@pytest.mark.parametrize("status", list(S))
def test_staying_put_is_always_allowed(status: EngineStatus) -> None:
    assert transition(status, status) is status


@pytest.mark.parametrize("status", list(S))
def test_documented_exits_draining_and_stopped(status: EngineStatus) -> None:
    """The docstring: any status except STOPPED may drain; any status may stop."""
    assert transition(status, S.STOPPED) is S.STOPPED
    if status not in (S.STOPPED, S.DRAINING):
        assert S.DRAINING in ALLOWED_TRANSITIONS[status]


def test_quarantine_is_reached_only_from_failure_paths() -> None:
    sources = {a for a, b in ALLOWED if b is S.QUARANTINED}
    assert sources == {S.UNHEALTHY, S.RECOVERING}


@pytest.mark.parametrize("status", list(S))
def test_admits_requests_only_when_ready_or_degraded(status: EngineStatus) -> None:
    assert status.admits_requests is (status in (S.READY, S.DEGRADED))


def test_status_values_are_plain_strings() -> None:
    assert S("ready") is S.READY
    assert f"{S.QUARANTINED}" == "quarantined"


def test_fake_engine_satisfies_every_protocol() -> None:
    engine = FakeEngine()
    for protocol in (Executable, HealthCheckable, Lifecycle, Engine):
        assert isinstance(engine, protocol)


def test_protocols_reject_what_lacks_their_methods() -> None:
    class OnlyRuns:
        async def execute(self, request: Any) -> Any:
            return request

        def stream(self, request: Any) -> Any:
            return iter(())

    assert isinstance(OnlyRuns(), Executable)
    assert not isinstance(OnlyRuns(), HealthCheckable)
    assert not isinstance(OnlyRuns(), Engine)
    assert not isinstance(object(), Lifecycle)
