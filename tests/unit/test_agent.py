"""controlplane/agent.py: the agent's components are built in one step, so none is
optional once the agent runs."""

from __future__ import annotations

import dataclasses
import types
import typing

import pytest

from controlplane import agent
from controlplane.agent import Agent, Components
from controlplane.config import build_config


def _optional(annotation: object) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return type(None) in typing.get_args(annotation)
    return annotation is None or annotation is type(None)


def test_components_is_a_frozen_dataclass_without_optional_fields() -> None:
    assert dataclasses.is_dataclass(Components)
    assert Components.__dataclass_params__.frozen  # type: ignore[attr-defined]
    hints = typing.get_type_hints(Components, vars(agent))
    fields = [field.name for field in dataclasses.fields(Components)]
    assert fields, "Components has no fields"
    optional = [name for name in fields if _optional(hints[name])]
    assert optional == [], f"optional components: {optional}"


def test_the_components_the_agent_runs_are_all_in_components() -> None:
    hints = typing.get_type_hints(Components, vars(agent))
    for name in ("layer", "runtime", "pools", "rings", "election", "keys", "tls", "server"):
        assert name in hints, name
        assert not _optional(hints[name]), name


def test_an_agent_that_has_not_started_has_no_components() -> None:
    unstarted = Agent(build_config())
    assert not unstarted.started
    with pytest.raises(RuntimeError, match="has not started"):
        unstarted.components  # noqa: B018
    # An agent that has not started has an agent's attributes, but no component ones.
    optional = {
        name
        for name, value in vars(unstarted).items()
        if value is None
        and name
        not in (
            "_components",
            "name_taken",
            "join_failed",
            "_leave_task",
            # Off unless the configuration asks for them.
            "metrics",
            "_metrics_listener",
            "_reload_config",
            # Installed on the root logger when the agent starts.
            "_log_stream",
        )
    }
    assert optional == set()


def test_the_loop_lag_probe_samples_at_the_configured_interval() -> None:
    assert Agent(build_config()).loop_lag.interval == 0.5
    sampled = Agent(build_config(flags={"loop_lag_interval": "0.05"}))
    assert sampled.loop_lag.interval == 0.05
