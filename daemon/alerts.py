"""The per-stream, per-kind alert state machine: fire after N crossings, resolve with hysteresis, cool down.

Pure: ``step`` takes a state and one observation and returns the next state and, when something
changed that a consumer must hear about, an event.

>>> policy = AlertPolicy(kind="fault", threshold=1.0, resolve_threshold=0.5, fire_after=2,
...                      resolve_after=1, cooldown_s=0.0, severities=(("warning", 1.0),))
>>> s = AlertState()
>>> s, e = step(policy, s, Observation(2.0, 0.0, ("t", 0, 7))); e is None
True
>>> s, e = step(policy, s, Observation(2.0, 1.0, ("t", 0, 8))); (e.state, e.first_source)
('firing', ('t', 0, 7))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from typing import Literal

Phase = Literal["idle", "pending", "firing"]
EventState = Literal["firing", "resolved"]
SourceKey = tuple[str, int, int]  # topic, partition, offset


@dataclass(frozen=True)
class AlertPolicy:
    kind: str
    threshold: float
    resolve_threshold: float
    fire_after: int
    resolve_after: int
    cooldown_s: float
    severities: tuple[tuple[str, float], ...]  # (name, multiple of threshold), ascending

    def severity(self, score: float) -> str:
        name = self.severities[0][0]
        for candidate, multiple in self.severities:
            if score >= multiple * self.threshold:
                name = candidate
        return name

    def rank(self, severity: str) -> int:
        return [name for name, _ in self.severities].index(severity)


@dataclass(frozen=True)
class Observation:
    score: float
    ts: float
    source: SourceKey
    # A peak-gated model's score before the gate (its ``hold_score``): the gated score starts an alert,
    # this one keeps it pending or firing. None: the score does both.
    hold: float | None = None

    @property
    def level(self) -> float:
        """What keeps an alert up and what it reports: the ungated score, or the gated one where it is
        higher (a gated score is 0 or the ungated one, except where a range check set it to the cap)."""
        return self.score if self.hold is None else max(self.score, self.hold)


@dataclass(frozen=True)
class AlertState:
    phase: Phase = "idle"
    run: int = 0  # consecutive readings above (pending) or below (firing) the relevant threshold
    first_source: SourceKey | None = None
    started_at: float = 0.0
    peak: float = 0.0
    severity: str = ""
    quiet_until: float = float("-inf")


@dataclass(frozen=True)
class AlertEvent:
    kind: str
    state: EventState
    severity: str
    score: float
    peak: float
    threshold: float
    ts: float
    started_at: float
    first_source: SourceKey  # the first offending reading: with stream and kind it fixes the alert id
    source: SourceKey  # the reading that caused this event
    resolution: str | None = None  # for resolved events: recovered | stream_idle | model_reload


def step(policy: AlertPolicy, state: AlertState, obs: Observation) -> tuple[AlertState, AlertEvent | None]:
    """Advances one stream's state for one kind by one scored reading."""
    if state.phase == "firing":
        return _step_firing(policy, state, obs)
    above = (obs.score if state.phase == "idle" else obs.level) >= policy.threshold
    if not above or obs.ts < state.quiet_until:
        return (AlertState(quiet_until=state.quiet_until) if state.phase != "idle" else state), None
    if state.phase == "idle":
        state = AlertState(
            phase="pending", first_source=obs.source, started_at=obs.ts, quiet_until=state.quiet_until
        )
    run, peak = state.run + 1, max(state.peak, obs.level)
    if run < policy.fire_after:
        return replace(state, run=run, peak=peak), None
    severity = policy.severity(peak)
    fired = replace(state, phase="firing", run=0, peak=peak, severity=severity)
    return fired, _event(policy, fired, obs, "firing")


def expire(
    policy: AlertPolicy, state: AlertState, ts: float, resolution: str = "stream_idle"
) -> AlertEvent | None:
    """The resolved event owed when a stream's state is dropped while its alert fires (idle past the TTL,
    or a new model whose score means something else)."""
    if state.phase != "firing":
        return None
    assert state.first_source is not None
    return AlertEvent(
        kind=policy.kind, state="resolved", severity=state.severity, score=0.0, peak=state.peak,
        threshold=policy.threshold, ts=ts, started_at=state.started_at, first_source=state.first_source,
        source=state.first_source, resolution=resolution,
    )  # fmt: skip


def _step_firing(
    policy: AlertPolicy, state: AlertState, obs: Observation
) -> tuple[AlertState, AlertEvent | None]:
    peak = max(state.peak, obs.level)
    if obs.level >= policy.resolve_threshold:
        severity = policy.severity(peak)
        escalated = policy.rank(severity) > policy.rank(state.severity)
        new = replace(state, run=0, peak=peak, severity=severity if escalated else state.severity)
        return new, (_event(policy, new, obs, "firing") if escalated else None)
    run = state.run + 1
    if run < policy.resolve_after:
        return replace(state, run=run, peak=peak), None
    resolved = AlertState(quiet_until=obs.ts + policy.cooldown_s)
    return resolved, replace(
        _event(policy, replace(state, peak=peak), obs, "resolved"), resolution="recovered"
    )


def _event(policy: AlertPolicy, state: AlertState, obs: Observation, kind: EventState) -> AlertEvent:
    assert state.first_source is not None  # set whenever the phase leaves idle
    return AlertEvent(
        kind=policy.kind,
        state=kind,
        severity=state.severity,
        score=obs.level,
        peak=state.peak,
        threshold=policy.threshold,
        ts=obs.ts,
        started_at=state.started_at,
        first_source=state.first_source,
        source=obs.source,
    )


class KindAlerts:
    """One alert kind's policy (with per-stream exceptions) and the state of every stream that is not
    idle under it."""

    def __init__(self, policy: AlertPolicy, overrides: Sequence[tuple[str, AlertPolicy]] = ()) -> None:
        self.policy = policy
        self.overrides = tuple(overrides)  # (stream id pattern, policy): the first match wins
        self.states: dict[str, AlertState] = {}  # idle streams are absent: most streams, most of the time

    @property
    def least_threshold(self) -> float:
        """No idle stream leaves idle on a value under this."""
        return min([self.policy.threshold, *(policy.threshold for _, policy in self.overrides)])

    def policy_of(self, stream: str) -> AlertPolicy:
        for pattern, policy in self.overrides:
            if fnmatchcase(stream, pattern):
                return policy
        return self.policy

    def observe(
        self, stream: str, score: float, ts: float, source: SourceKey, hold: float | None = None
    ) -> AlertEvent | None:
        """Steps ``stream``'s state by one scored reading; the event it causes, if any."""
        state = self.states.get(stream)
        policy = self.policy_of(stream) if self.overrides else self.policy
        if state is None and score < policy.threshold:
            return None  # the common case: an idle stream stays idle, nothing to record
        obs = Observation(score, ts, source, hold)
        state, event = step(policy, state or AlertState(), obs)
        if state.phase == "idle" and state.quiet_until < obs.ts:
            self.states.pop(stream, None)
        else:
            self.states[stream] = state
        return event

    def expire(self, stream: str, ts: float, resolution: str = "stream_idle") -> AlertEvent | None:
        """Forgets ``stream``; the resolved event owed if its alert was firing."""
        state = self.states.pop(stream, None)
        return None if state is None else expire(self.policy_of(stream), state, ts, resolution)
