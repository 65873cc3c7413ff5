from __future__ import annotations

from daemon.alerts import AlertEvent, AlertPolicy, AlertState, Observation, expire, step

POLICY = AlertPolicy(
    kind="fault",
    threshold=2.0,
    resolve_threshold=1.5,
    fire_after=3,
    resolve_after=2,
    cooldown_s=100.0,
    severities=(("warning", 1.0), ("critical", 2.0)),
)


def _run(
    scores: list[float], state: AlertState | None = None, t0: float = 0.0
) -> tuple[AlertState, list[AlertEvent]]:
    state = state or AlertState()
    events = []
    for i, score in enumerate(scores):
        state, event = step(POLICY, state, Observation(score, t0 + i, ("r", 0, int(t0) + i)))
        if event is not None:
            events.append(event)
    return state, events


def test_fires_only_after_n_consecutive_crossings_and_names_the_first_offender() -> None:
    _, events = _run([2.5, 2.5, 1.0, 2.1, 2.2, 2.3])
    assert [(e.state, e.first_source, e.source) for e in events] == [("firing", ("r", 0, 3), ("r", 0, 5))]
    assert events[0].severity == "warning" and events[0].peak == 2.3


def test_resolves_after_m_readings_below_the_lower_threshold_only() -> None:
    state, events = _run([3.0, 3.0, 3.0, 1.8, 1.7, 1.6, 1.4, 1.9, 1.4, 1.3])
    assert [e.state for e in events] == ["firing", "resolved"]
    resolved = events[1]
    assert resolved.source == ("r", 0, 9)  # 1.8/1.7/1.6 sit between the thresholds; 1.9 restarts the count
    assert resolved.first_source == events[0].first_source
    assert state.phase == "idle"


def test_cool_down_suppresses_refiring() -> None:
    state, events = _run([3.0, 3.0, 3.0, 1.0, 1.0])
    assert [e.state for e in events] == ["firing", "resolved"]
    state, during = _run([3.0] * 5, state, t0=10.0)
    assert during == []
    _, after = _run([3.0] * 3, state, t0=200.0)
    assert [e.state for e in after] == ["firing"]


def test_severity_escalates_once_with_the_same_first_offender() -> None:
    _, events = _run([2.1, 2.1, 2.1, 4.5, 5.0, 4.2])
    assert [(e.state, e.severity) for e in events] == [("firing", "warning"), ("firing", "critical")]
    assert events[0].first_source == events[1].first_source


def test_dropping_a_firing_stream_owes_a_resolved_event() -> None:
    state, events = _run([3.0, 3.0, 3.0])
    owed = expire(POLICY, state, 99.0)
    assert owed is not None and owed.state == "resolved" and owed.resolution == "stream_idle"
    assert owed.first_source == events[0].first_source and owed.ts == 99.0
    assert expire(POLICY, AlertState(), 99.0) is None
    _, recovered = _run([3.0, 3.0, 3.0, 1.0, 1.0])
    assert recovered[-1].resolution == "recovered"


def test_a_hold_score_keeps_an_alert_the_gated_score_started() -> None:
    """With a peak-gated model the gated score must cross to start an alert; its ungated (hold) score
    counts towards firing and keeps the alert up until it subsides."""
    gated = [0.0, 2.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    hold = [2.5, 2.5, 2.4, 2.3, 2.2, 1.6, 1.4, 1.3, 1.2]
    state, events = AlertState(), []
    for i, (score, held) in enumerate(zip(gated, hold, strict=True)):
        state, event = step(POLICY, state, Observation(score, float(i), ("r", 0, i), held))
        events.append(event)
    # Row 0's hold is high but its gated score is not: nothing starts there.
    fired = [i for i, e in enumerate(events) if e is not None and e.state == "firing"]
    resolved = [i for i, e in enumerate(events) if e is not None and e.state == "resolved"]
    assert fired == [3] and resolved == [7]  # pending from 1, fired at 3, two holds under 1.5 resolve
    first = events[3]
    assert first is not None and first.first_source == ("r", 0, 1) and first.score == 2.3


def test_a_gated_score_above_its_hold_score_counts_and_is_reported() -> None:
    """A range check sets a gated model's score to the cap without touching its hold score: that
    reading counts towards firing, and the alert reports it and its severity."""
    gated = [9.0, 0.0, 0.0]  # a range break, then the gate's zeros
    hold = [0.5, 2.1, 2.2]
    state, events = AlertState(), []
    for i, (score, held) in enumerate(zip(gated, hold, strict=True)):
        state, event = step(POLICY, state, Observation(score, float(i), ("r", 0, i), held))
        events.append(event)
    fired = events[2]
    assert events[:2] == [None, None] and fired is not None and fired.state == "firing"
    assert fired.first_source == ("r", 0, 0) and fired.peak == 9.0 and fired.severity == "critical"
