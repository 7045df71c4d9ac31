"""The PS3.8 9.2 state machine against the standard, cell by cell and by scenario."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections import deque
from collections.abc import Iterable
from pathlib import Path

import pytest
from dicombus.protocol.errors import (
    AbortReason,
    AbortSource,
    LocalProtocolError,
    RemoteProtocolError,
)
from dicombus.protocol.fsm import (
    ACTION_EFFECTS,
    ARTIM_RUNNING_STATES,
    LOCAL_USER_EVENTS,
    TRANSITIONS,
    Action,
    Condition,
    Effect,
    Event,
    State,
    StateMachine,
    Transition,
    action_outcome,
    conditions_holding,
    transition_for,
)
from helpers import import_peer
from hypothesis import given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[2]

# PS3.8 Table 9-10 "DICOM Upper Layer Protocol State Transition Table",
# transcribed from the standard: one row per event, one column per state,
# "." where the standard leaves the cell empty.
TABLE_9_10 = """
       Sta1  Sta2  Sta3  Sta4  Sta5  Sta6  Sta7  Sta8  Sta9  Sta10 Sta11 Sta12 Sta13
Evt1   AE-1  .     .     .     .     .     .     .     .     .     .     .     .
Evt2   .     .     .     AE-2  .     .     .     .     .     .     .     .     .
Evt3   .     AA-1  AA-8  .     AE-3  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-6
Evt4   .     AA-1  AA-8  .     AE-4  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-6
Evt5   AE-5  .     .     .     .     .     .     .     .     .     .     .     .
Evt6   .     AE-6  AA-8  .     AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-7
Evt7   .     .     AE-7  .     .     .     .     .     .     .     .     .     .
Evt8   .     .     AE-8  .     .     .     .     .     .     .     .     .     .
Evt9   .     .     .     .     .     DT-1  .     AR-7  .     .     .     .     .
Evt10  .     AA-1  AA-8  .     AA-8  DT-2  AR-6  AA-8  AA-8  AA-8  AA-8  AA-8  AA-6
Evt11  .     .     .     .     .     AR-1  .     .     .     .     .     .     .
Evt12  .     AA-1  AA-8  .     AA-8  AR-2  AR-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-6
Evt13  .     AA-1  AA-8  .     AA-8  AA-8  AR-3  AA-8  AA-8  AR-10 AR-3  AA-8  AA-6
Evt14  .     .     .     .     .     .     .     AR-4  AR-9  .     .     AR-4  .
Evt15  .     .     AA-1  AA-2  AA-1  AA-1  AA-1  AA-1  AA-1  AA-1  AA-1  AA-1  .
Evt16  .     AA-2  AA-3  .     AA-3  AA-3  AA-3  AA-3  AA-3  AA-3  AA-3  AA-3  AA-2
Evt17  .     AA-5  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AR-5
Evt18  .     AA-2  .     .     .     .     .     .     .     .     .     .     AA-2
Evt19  .     AA-1  AA-8  .     AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-7
"""


def _parse_grid(text: str) -> dict[tuple[State, Event], str]:
    """The grid as {(state, event): action name or ""}, checking its shape."""
    header, *rows = text.strip().splitlines()
    columns = header.split()
    assert columns == [f"Sta{n}" for n in range(1, 14)]
    assert len(rows) == 19
    grid: dict[tuple[State, Event], str] = {}
    for number, row in enumerate(rows, start=1):
        label, *cells = row.split()
        assert label == f"Evt{number}"
        assert len(cells) == 13, label
        for state, cell in zip(State, cells, strict=True):
            grid[state, Event(number)] = "" if cell == "." else cell
    return grid


EXPECTED_TABLE = _parse_grid(TABLE_9_10)

E = Effect
C = Condition

# PS3.8 Tables 9-6 (AE), 9-7 (DT), 9-8 (AR) and 9-9 (AA), transcribed:
# action -> {branch condition: (effects in the standard's order, next state)}.
EXPECTED_ACTIONS: dict[str, dict[Condition, tuple[tuple[Effect, ...], int]]] = {
    "AE-1": {C.ALWAYS: ((E.OPEN_TRANSPORT,), 4)},
    "AE-2": {C.ALWAYS: ((E.SEND_ASSOCIATE_RQ,), 5)},
    "AE-3": {C.ALWAYS: ((E.CONFIRM_ASSOCIATE_ACCEPT,), 6)},
    "AE-4": {C.ALWAYS: ((E.CONFIRM_ASSOCIATE_REJECT, E.CLOSE_TRANSPORT), 1)},
    "AE-5": {C.ALWAYS: ((E.ACCEPT_TRANSPORT, E.START_ARTIM), 2)},
    "AE-6": {
        C.ASSOCIATE_RQ_ACCEPTABLE: ((E.STOP_ARTIM, E.INDICATE_ASSOCIATE), 3),
        C.ASSOCIATE_RQ_NOT_ACCEPTABLE: ((E.STOP_ARTIM, E.SEND_ASSOCIATE_RJ, E.START_ARTIM), 13),
    },
    "AE-7": {C.ALWAYS: ((E.SEND_ASSOCIATE_AC,), 6)},
    "AE-8": {C.ALWAYS: ((E.SEND_ASSOCIATE_RJ, E.START_ARTIM), 13)},
    "DT-1": {C.ALWAYS: ((E.SEND_P_DATA,), 6)},
    "DT-2": {C.ALWAYS: ((E.INDICATE_P_DATA,), 6)},
    "AR-1": {C.ALWAYS: ((E.SEND_RELEASE_RQ,), 7)},
    "AR-2": {C.ALWAYS: ((E.INDICATE_RELEASE,), 8)},
    "AR-3": {C.ALWAYS: ((E.CONFIRM_RELEASE, E.CLOSE_TRANSPORT), 1)},
    "AR-4": {C.ALWAYS: ((E.SEND_RELEASE_RP, E.START_ARTIM), 13)},
    "AR-5": {C.ALWAYS: ((E.STOP_ARTIM,), 1)},
    "AR-6": {C.ALWAYS: ((E.INDICATE_P_DATA,), 7)},
    "AR-7": {C.ALWAYS: ((E.SEND_P_DATA,), 8)},
    "AR-8": {
        C.ASSOCIATION_REQUESTOR: ((E.INDICATE_RELEASE,), 9),
        C.ASSOCIATION_ACCEPTOR: ((E.INDICATE_RELEASE,), 10),
    },
    "AR-9": {C.ALWAYS: ((E.SEND_RELEASE_RP,), 11)},
    "AR-10": {C.ALWAYS: ((E.CONFIRM_RELEASE,), 12)},
    "AA-1": {
        C.ARTIM_NOT_RUNNING: ((E.SEND_ABORT, E.START_ARTIM), 13),
        C.ARTIM_RUNNING: ((E.SEND_ABORT, E.STOP_ARTIM, E.START_ARTIM), 13),
    },
    "AA-2": {
        C.ARTIM_RUNNING: ((E.STOP_ARTIM, E.CLOSE_TRANSPORT), 1),
        C.ARTIM_NOT_RUNNING: ((E.CLOSE_TRANSPORT,), 1),
    },
    "AA-3": {
        C.ABORT_FROM_SERVICE_USER: ((E.INDICATE_ABORT, E.CLOSE_TRANSPORT), 1),
        C.ABORT_FROM_SERVICE_PROVIDER: ((E.INDICATE_P_ABORT, E.CLOSE_TRANSPORT), 1),
    },
    "AA-4": {C.ALWAYS: ((E.INDICATE_P_ABORT,), 1)},
    "AA-5": {C.ALWAYS: ((E.STOP_ARTIM,), 1)},
    "AA-6": {C.ALWAYS: ((), 13)},
    "AA-7": {C.ALWAYS: ((E.SEND_ABORT,), 13)},
    "AA-8": {C.ALWAYS: ((E.SEND_ABORT, E.INDICATE_P_ABORT, E.START_ARTIM), 13)},
}

# A shortest way to each state from Sta1: (is_requestor, events).
PATHS: dict[State, tuple[bool, tuple[int, ...]]] = {
    State.STA1: (True, ()),
    State.STA2: (False, (5,)),
    State.STA3: (False, (5, 6)),
    State.STA4: (True, (1,)),
    State.STA5: (True, (1, 2)),
    State.STA6: (True, (1, 2, 3)),
    State.STA7: (True, (1, 2, 3, 11)),
    State.STA8: (True, (1, 2, 3, 12)),
    State.STA9: (True, (1, 2, 3, 11, 12)),
    State.STA10: (False, (5, 6, 7, 11, 12)),
    State.STA11: (True, (1, 2, 3, 11, 12, 14)),
    State.STA12: (False, (5, 6, 7, 11, 12, 13)),
    State.STA13: (False, (5, 6, 8)),
}

FLAGS = [(acceptable, user) for acceptable in (True, False) for user in (True, False)]


def machine_in(state: State) -> StateMachine:
    is_requestor, events = PATHS[state]
    machine = StateMachine(is_requestor=is_requestor)
    for number in events:
        machine.handle(Event(number))
    assert machine.state is state
    return machine


def walk(machine: StateMachine, steps: Iterable[tuple[int, str, int]]) -> None:
    """Feed events; each step names the event, the expected action and next state."""
    for number, action, next_state in steps:
        before = machine.state
        transition = machine.handle(Event(number))
        assert (transition.action.value, transition.next_state) == (action, State(next_state))
        assert transition.current_state is before
        assert machine.state is State(next_state)


def step(machine: StateMachine, number: int) -> tuple[tuple[Effect, ...], State]:
    """Feed one event; return its effects and the state it leads to."""
    transition = machine.handle(Event(number))
    assert machine.state is transition.next_state
    return transition.effects, machine.state


def artim_after(running: bool, effects: Iterable[Effect]) -> bool:
    """Run the ARTIM timer through ``effects``; start and stop must make sense."""
    for effect in effects:
        if effect is Effect.START_ARTIM:
            assert not running, "START_ARTIM while ARTIM runs"
            running = True
        elif effect is Effect.STOP_ARTIM:
            assert running, "STOP_ARTIM while ARTIM is idle"
            running = False
    return running


# --- the tables ------------------------------------------------------------


@pytest.mark.parametrize(("state", "event"), sorted(EXPECTED_TABLE))
def test_table_9_10_cell(state: State, event: Event) -> None:
    action = TRANSITIONS.get((state, event))
    assert (action.value if action else "") == EXPECTED_TABLE[state, event]


def test_table_has_no_cells_the_standard_lacks() -> None:
    assert set(TRANSITIONS) == {cell for cell, name in EXPECTED_TABLE.items() if name}
    assert len(TRANSITIONS) == 123


def test_table_agrees_with_pynetdicom() -> None:
    fsm = import_peer("pynetdicom.fsm")
    ours = {(f"Evt{e.value}", f"Sta{s.value}"): a.value for (s, e), a in TRANSITIONS.items()}
    assert ours == dict(fsm.TRANSITION_TABLE)


def test_action_effects_match_tables_9_6_to_9_9() -> None:
    ours = {
        action.value: {
            condition: (outcome.effects, outcome.next_state.value)
            for condition, outcome in branches.items()
        }
        for action, branches in ACTION_EFFECTS.items()
    }
    assert ours == EXPECTED_ACTIONS


def test_every_action_is_defined_and_used() -> None:
    assert set(ACTION_EFFECTS) == set(Action)
    assert set(TRANSITIONS.values()) == set(Action)


def test_action_values_are_the_standards_names() -> None:
    for action in Action:
        assert action.name == action.value.replace("-", "_")


def test_branches_are_always_or_a_complementary_pair() -> None:
    pairs = [
        {C.ASSOCIATE_RQ_ACCEPTABLE, C.ASSOCIATE_RQ_NOT_ACCEPTABLE},
        {C.ASSOCIATION_REQUESTOR, C.ASSOCIATION_ACCEPTOR},
        {C.ABORT_FROM_SERVICE_USER, C.ABORT_FROM_SERVICE_PROVIDER},
        {C.ARTIM_RUNNING, C.ARTIM_NOT_RUNNING},
    ]
    for action, branches in ACTION_EFFECTS.items():
        assert set(branches) == {C.ALWAYS} or set(branches) in pairs, action


@pytest.mark.parametrize("kind", [State, Event, Action, Effect, Condition])
def test_every_member_has_a_description(
    kind: type[State | Event | Action | Effect | Condition],
) -> None:
    for member in kind:
        assert member.description.strip(), member


def test_enums_count_as_the_standard_does() -> None:
    assert [s.value for s in State] == list(range(1, 14))
    assert [e.value for e in Event] == list(range(1, 20))
    assert len(Action) == 28


def test_local_user_events_are_the_primitives_from_our_user() -> None:
    assert {e.value for e in LOCAL_USER_EVENTS} == {1, 7, 8, 9, 11, 14, 15}


def test_transition_is_a_frozen_keyword_only_value() -> None:
    transition = machine_in(State.STA1).handle(Event.EVT1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        transition.next_state = State.STA6  # type: ignore[misc]
    with pytest.raises(TypeError):
        Transition(State.STA1, Event.EVT1, Action.AE_1, State.STA4, ())  # type: ignore[call-arg]


def test_inconsistent_conditions_are_our_own_bug() -> None:
    with pytest.raises(LocalProtocolError):
        action_outcome(Action.AR_8, {C.ALWAYS})
    with pytest.raises(LocalProtocolError):
        action_outcome(Action.AA_3, {C.ABORT_FROM_SERVICE_USER, C.ABORT_FROM_SERVICE_PROVIDER})


# --- invariants over every cell --------------------------------------------


def _every_transition() -> Iterable[tuple[State, Event, bool, Transition]]:
    for state, event in TRANSITIONS:
        for is_requestor in (True, False):
            for acceptable, user in FLAGS:
                yield (
                    state,
                    event,
                    is_requestor,
                    transition_for(
                        state,
                        event,
                        is_requestor=is_requestor,
                        associate_rq_acceptable=acceptable,
                        abort_from_service_user=user,
                    ),
                )


def test_artim_runs_exactly_in_sta2_and_sta13() -> None:
    for state, _event, _role, transition in _every_transition():
        running = artim_after(state in ARTIM_RUNNING_STATES, transition.effects)
        assert running == (transition.next_state in ARTIM_RUNNING_STATES), transition


def test_transport_closes_exactly_on_the_way_to_sta1() -> None:
    for state, event, _role, transition in _every_transition():
        closes = Effect.CLOSE_TRANSPORT in transition.effects
        if closes:
            assert transition.next_state is State.STA1, transition
        if transition.next_state is State.STA1 and state is not State.STA1:
            # Either we close it, or it has just closed under us (Evt17).
            assert closes or event is Event.EVT17, transition


def test_conditions_holding_picks_one_of_each_pair() -> None:
    held = conditions_holding(
        current_state=State.STA2,
        is_requestor=False,
        associate_rq_acceptable=False,
        abort_from_service_user=False,
    )
    assert held == {
        C.ALWAYS,
        C.ASSOCIATE_RQ_NOT_ACCEPTABLE,
        C.ASSOCIATION_ACCEPTOR,
        C.ABORT_FROM_SERVICE_PROVIDER,
        C.ARTIM_RUNNING,
    }


@pytest.mark.parametrize(("state", "event"), sorted(EXPECTED_TABLE))
def test_handle_in_every_cell(state: State, event: Event) -> None:
    machine = machine_in(state)
    expected = EXPECTED_TABLE[state, event]
    if expected:
        assert machine.handle(event).action.value == expected
        return
    error = LocalProtocolError if event in LOCAL_USER_EVENTS else RemoteProtocolError
    with pytest.raises(error) as raised:
        machine.handle(event)
    assert type(raised.value) is error
    assert machine.state is state
    if isinstance(raised.value, RemoteProtocolError):
        assert raised.value.abort_source is AbortSource.SERVICE_PROVIDER
        assert raised.value.abort_reason is AbortReason.UNEXPECTED_PDU


# --- scenarios on one side -------------------------------------------------


def test_requestor_associates_transfers_and_releases() -> None:
    machine = StateMachine(is_requestor=True)
    assert (machine.state, machine.is_requestor) == (State.STA1, True)
    assert machine.handle(Event.EVT1).effects == (E.OPEN_TRANSPORT,)
    assert machine.handle(Event.EVT2).effects == (E.SEND_ASSOCIATE_RQ,)
    assert machine.handle(Event.EVT3).effects == (E.CONFIRM_ASSOCIATE_ACCEPT,)
    walk(machine, [(9, "DT-1", 6), (10, "DT-2", 6), (11, "AR-1", 7), (10, "AR-6", 7)])
    last = machine.handle(Event.EVT13)
    assert (last.action, last.effects) == (Action.AR_3, (E.CONFIRM_RELEASE, E.CLOSE_TRANSPORT))
    assert machine.state is State.STA1


def test_acceptor_associates_transfers_and_releases() -> None:
    machine = StateMachine(is_requestor=False)
    assert machine.handle(Event.EVT5).effects == (E.ACCEPT_TRANSPORT, E.START_ARTIM)
    assert machine.handle(Event.EVT6).effects == (E.STOP_ARTIM, E.INDICATE_ASSOCIATE)
    assert machine.handle(Event.EVT7).effects == (E.SEND_ASSOCIATE_AC,)
    walk(machine, [(10, "DT-2", 6), (9, "DT-1", 6), (12, "AR-2", 8), (9, "AR-7", 8)])
    assert machine.handle(Event.EVT14).effects == (E.SEND_RELEASE_RP, E.START_ARTIM)
    assert machine.handle(Event.EVT17).effects == (E.STOP_ARTIM,)
    assert machine.state is State.STA1


def test_acceptor_user_rejects() -> None:
    machine = machine_in(State.STA3)
    assert machine.handle(Event.EVT8).effects == (E.SEND_ASSOCIATE_RJ, E.START_ARTIM)
    walk(machine, [(10, "AA-6", 13), (6, "AA-7", 13), (17, "AR-5", 1)])


def test_acceptor_provider_rejects_then_artim_expires() -> None:
    machine = machine_in(State.STA2)
    rejected = machine.handle(Event.EVT6, associate_rq_acceptable=False)
    assert (rejected.action, rejected.next_state) == (Action.AE_6, State.STA13)
    assert rejected.effects == (E.STOP_ARTIM, E.SEND_ASSOCIATE_RJ, E.START_ARTIM)
    expired = machine.handle(Event.EVT18)
    assert (expired.action, expired.effects) == (Action.AA_2, (E.STOP_ARTIM, E.CLOSE_TRANSPORT))
    assert machine.state is State.STA1


def test_requestor_is_rejected() -> None:
    machine = machine_in(State.STA5)
    rejected = machine.handle(Event.EVT4)
    assert (rejected.action, rejected.next_state) == (Action.AE_4, State.STA1)
    assert rejected.effects == (E.CONFIRM_ASSOCIATE_REJECT, E.CLOSE_TRANSPORT)


def test_release_collision_requestor_side() -> None:
    machine = machine_in(State.STA7)
    assert step(machine, 12) == ((E.INDICATE_RELEASE,), State.STA9)
    assert step(machine, 14) == ((E.SEND_RELEASE_RP,), State.STA11)
    assert step(machine, 13) == ((E.CONFIRM_RELEASE, E.CLOSE_TRANSPORT), State.STA1)


def test_release_collision_acceptor_side() -> None:
    machine = StateMachine(is_requestor=False)
    walk(machine, [(5, "AE-5", 2), (6, "AE-6", 3), (7, "AE-7", 6), (11, "AR-1", 7)])
    assert step(machine, 12) == ((E.INDICATE_RELEASE,), State.STA10)
    assert step(machine, 13) == ((E.CONFIRM_RELEASE,), State.STA12)
    assert step(machine, 14) == ((E.SEND_RELEASE_RP, E.START_ARTIM), State.STA13)
    assert step(machine, 17) == ((E.STOP_ARTIM,), State.STA1)


# --- aborts from each side in each state -----------------------------------

LOCAL_ABORT: dict[State, tuple[str, tuple[Effect, ...], int] | None] = {
    State.STA1: None,
    State.STA2: None,
    State.STA3: ("AA-1", (E.SEND_ABORT, E.START_ARTIM), 13),
    State.STA4: ("AA-2", (E.CLOSE_TRANSPORT,), 1),
    **{State(n): ("AA-1", (E.SEND_ABORT, E.START_ARTIM), 13) for n in range(5, 13)},
    State.STA13: None,
}


@pytest.mark.parametrize("state", list(State))
def test_local_user_aborts(state: State) -> None:
    machine = machine_in(state)
    expected = LOCAL_ABORT[state]
    if expected is None:
        with pytest.raises(LocalProtocolError):
            machine.handle(Event.EVT15)
        assert machine.state is state
        return
    transition = machine.handle(Event.EVT15)
    assert (transition.action.value, transition.effects, transition.next_state) == (
        expected[0],
        expected[1],
        State(expected[2]),
    )
    if transition.next_state is State.STA13:
        # The peer closes the connection on our A-ABORT (or ARTIM closes it).
        assert step(machine, 17) == ((E.STOP_ARTIM,), State.STA1)


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("from_user", [True, False])
def test_peer_aborts(state: State, from_user: bool) -> None:
    machine = machine_in(state)
    if state in (State.STA1, State.STA4):
        with pytest.raises(RemoteProtocolError):
            machine.handle(Event.EVT16, abort_from_service_user=from_user)
        return
    transition = machine.handle(Event.EVT16, abort_from_service_user=from_user)
    assert machine.state is State.STA1
    if state in (State.STA2, State.STA13):
        assert transition.action is Action.AA_2
        assert transition.effects == (E.STOP_ARTIM, E.CLOSE_TRANSPORT)
    else:
        indication = E.INDICATE_ABORT if from_user else E.INDICATE_P_ABORT
        assert transition.action is Action.AA_3
        assert transition.effects == (indication, E.CLOSE_TRANSPORT)


@pytest.mark.parametrize("state", list(State))
def test_invalid_pdu_makes_us_abort(state: State) -> None:
    machine = machine_in(state)
    if state in (State.STA1, State.STA4):
        with pytest.raises(RemoteProtocolError):
            machine.handle(Event.EVT19)
        return
    transition = machine.handle(Event.EVT19)
    assert machine.state is State.STA13
    expected = {
        State.STA2: (Action.AA_1, (E.SEND_ABORT, E.STOP_ARTIM, E.START_ARTIM)),
        State.STA13: (Action.AA_7, (E.SEND_ABORT,)),
    }.get(state, (Action.AA_8, (E.SEND_ABORT, E.INDICATE_P_ABORT, E.START_ARTIM)))
    assert (transition.action, transition.effects) == expected


@pytest.mark.parametrize("state", list(State))
def test_transport_closes_under_us(state: State) -> None:
    machine = machine_in(state)
    if state is State.STA1:
        with pytest.raises(RemoteProtocolError):
            machine.handle(Event.EVT17)
        return
    transition = machine.handle(Event.EVT17)
    assert machine.state is State.STA1
    expected = {
        State.STA2: (Action.AA_5, (E.STOP_ARTIM,)),
        State.STA13: (Action.AR_5, (E.STOP_ARTIM,)),
    }.get(state, (Action.AA_4, (E.INDICATE_P_ABORT,)))
    assert (transition.action, transition.effects) == expected


@pytest.mark.parametrize("state", list(State))
def test_artim_expiry(state: State) -> None:
    machine = machine_in(state)
    if state not in (State.STA2, State.STA13):
        with pytest.raises(RemoteProtocolError):
            machine.handle(Event.EVT18)
        assert machine.state is state
        return
    transition = machine.handle(Event.EVT18)
    assert (transition.action, transition.effects) == (
        Action.AA_2,
        (E.STOP_ARTIM, E.CLOSE_TRANSPORT),
    )
    assert machine.state is State.STA1


# --- two machines joined by a transport ------------------------------------

# What the peer's machine sees when ours carries out an effect.
WIRE = {
    E.SEND_ASSOCIATE_RQ: Event.EVT6,
    E.SEND_ASSOCIATE_AC: Event.EVT3,
    E.SEND_ASSOCIATE_RJ: Event.EVT4,
    E.SEND_P_DATA: Event.EVT10,
    E.SEND_RELEASE_RQ: Event.EVT12,
    E.SEND_RELEASE_RP: Event.EVT13,
    E.SEND_ABORT: Event.EVT16,
    E.CLOSE_TRANSPORT: Event.EVT17,
}


class Link:
    """A requestor and an acceptor joined by an in-order transport, as TCP joins them."""

    def __init__(self) -> None:
        self.requestor = StateMachine(is_requestor=True)
        self.acceptor = StateMachine(is_requestor=False)
        self.in_flight: deque[tuple[StateMachine, Event]] = deque()
        self.actions: list[str] = []

    def user(self, machine: StateMachine, number: int) -> None:
        self._apply(machine, Event(number))

    def deliver(self) -> None:
        while self.in_flight:
            self._apply(*self.in_flight.popleft())

    def _apply(self, machine: StateMachine, event: Event) -> None:
        peer = self.acceptor if machine is self.requestor else self.requestor
        transition = machine.handle(event)
        self.actions.append(transition.action.value)
        for effect in transition.effects:
            if effect is E.OPEN_TRANSPORT:
                self.in_flight += [(peer, Event.EVT5), (machine, Event.EVT2)]
            elif effect in WIRE:
                self.in_flight.append((peer, WIRE[effect]))

    def states(self) -> tuple[State, State]:
        return self.requestor.state, self.acceptor.state


def _associated() -> Link:
    link = Link()
    link.user(link.requestor, 1)
    link.deliver()
    link.user(link.acceptor, 7)
    link.deliver()
    assert link.states() == (State.STA6, State.STA6)
    return link


def test_link_associate_and_release() -> None:
    link = _associated()
    link.user(link.requestor, 9)
    link.deliver()
    link.user(link.requestor, 11)
    link.deliver()
    link.user(link.acceptor, 14)
    link.deliver()
    assert link.states() == (State.STA1, State.STA1)
    assert link.actions == [
        *("AE-1", "AE-5", "AE-2", "AE-6", "AE-7", "AE-3"),
        *("DT-1", "DT-2", "AR-1", "AR-2", "AR-4", "AR-3", "AR-5"),
    ]


def test_link_release_collision() -> None:
    link = _associated()
    link.user(link.requestor, 11)
    link.user(link.acceptor, 11)
    link.deliver()
    assert link.states() == (State.STA9, State.STA10)
    link.user(link.requestor, 14)
    link.deliver()
    assert link.states() == (State.STA11, State.STA12)
    link.user(link.acceptor, 14)
    link.deliver()
    assert link.states() == (State.STA1, State.STA1)


def test_link_reject() -> None:
    link = Link()
    link.user(link.requestor, 1)
    link.deliver()
    link.user(link.acceptor, 8)
    link.deliver()
    assert link.states() == (State.STA1, State.STA1)
    assert link.actions[-3:] == ["AE-8", "AE-4", "AR-5"]


@pytest.mark.parametrize("aborter", ["requestor", "acceptor"])
def test_link_abort(aborter: str) -> None:
    link = _associated()
    link.user(getattr(link, aborter), 15)
    link.deliver()
    assert link.states() == (State.STA1, State.STA1)
    assert link.actions[-3:] == ["AA-1", "AA-3", "AR-5"]


# --- random event sequences ------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(
    is_requestor=st.booleans(),
    steps=st.lists(
        st.tuples(st.sampled_from(list(Event)), st.booleans(), st.booleans()), max_size=40
    ),
)
def test_random_events_leave_a_valid_state(
    is_requestor: bool, steps: list[tuple[Event, bool, bool]]
) -> None:
    machine = StateMachine(is_requestor=is_requestor)
    artim = False
    for event, acceptable, from_user in steps:
        before = machine.state
        try:
            transition = machine.handle(
                event, associate_rq_acceptable=acceptable, abort_from_service_user=from_user
            )
        except LocalProtocolError:
            assert event in LOCAL_USER_EVENTS
            assert machine.state is before
            continue
        except RemoteProtocolError:
            assert event not in LOCAL_USER_EVENTS
            assert machine.state is before
            continue
        assert transition.current_state is before
        assert machine.state is transition.next_state
        artim = artim_after(artim, transition.effects)
        assert artim == (machine.state in ARTIM_RUNNING_STATES)
    assert isinstance(machine.state, State)


@settings(max_examples=300, deadline=None)
@given(is_requestor=st.booleans(), data=st.data())
def test_random_allowed_events_walk_deep(is_requestor: bool, data: st.DataObject) -> None:
    """Draw only events the current state allows, to reach the release states too."""
    machine = StateMachine(is_requestor=is_requestor)
    artim = False
    for _ in range(30):
        allowed = sorted(event for state, event in TRANSITIONS if state is machine.state)
        transition = machine.handle(
            data.draw(st.sampled_from(allowed)),
            associate_rq_acceptable=data.draw(st.booleans()),
            abort_from_service_user=data.draw(st.booleans()),
        )
        artim = artim_after(artim, transition.effects)
        assert artim == (machine.state in ARTIM_RUNNING_STATES)
        assert machine.state is transition.next_state


# --- the generated docs ----------------------------------------------------


def test_docs_page_is_generated_from_the_tables() -> None:
    drawn = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "draw_fsm.py")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert (REPO / "docs" / "state-machine.md").read_text(encoding="utf-8") == drawn
    assert "| Evt13 |  | AA-1 | AA-8 |  | AA-8 | AA-8 | AR-3 |" in drawn
