"""The DICOM Upper Layer state machine (PS3.8 9.2), as data.

Three tables make the machine, each transcribed from the standard:

- ``TRANSITIONS``: PS3.8 Table 9-10, ``(state, event) -> action``. A cell the
  standard leaves empty is absent; meeting one is a protocol error.
- ``ACTION_EFFECTS``: PS3.8 Tables 9-6 to 9-9, ``action -> {condition:
  outcome}``. An outcome is the ordered effects the runtime must carry out and
  the next state. Most actions have one outcome (``Condition.ALWAYS``); AE-6,
  AR-8, AA-1, AA-2 and AA-3 branch on a condition the standard names.
- The descriptions of states, events, actions and effects, for logs and docs.

``StateMachine.handle(event)`` looks the event up and returns a ``Transition``
naming the effects; it never performs them. The runtime opens sockets, sends
PDUs, runs the ARTIM timer and feeds back the events that result.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Set
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from dicombus.protocol.errors import (
    AbortReason,
    AbortSource,
    LocalProtocolError,
    RemoteProtocolError,
)

__all__ = [
    "ACTION_EFFECTS",
    "ARTIM_RUNNING_STATES",
    "LOCAL_USER_EVENTS",
    "TRANSITIONS",
    "Action",
    "Condition",
    "Effect",
    "Event",
    "Outcome",
    "State",
    "StateMachine",
    "Transition",
    "action_outcome",
    "conditions_holding",
    "transition_for",
]


class State(enum.IntEnum):
    """PS3.8 Table 9-1: the states Sta1 to Sta13 of the Upper Layer."""

    STA1 = 1
    STA2 = 2
    STA3 = 3
    STA4 = 4
    STA5 = 5
    STA6 = 6
    STA7 = 7
    STA8 = 8
    STA9 = 9
    STA10 = 10
    STA11 = 11
    STA12 = 12
    STA13 = 13

    @property
    def description(self) -> str:
        """What the Upper Layer is doing or waiting for in this state."""
        return _STATE_DESCRIPTIONS[self]


class Event(enum.IntEnum):
    """PS3.8 Table 9-2: the events Evt1 to Evt19 that drive the Upper Layer."""

    EVT1 = 1
    EVT2 = 2
    EVT3 = 3
    EVT4 = 4
    EVT5 = 5
    EVT6 = 6
    EVT7 = 7
    EVT8 = 8
    EVT9 = 9
    EVT10 = 10
    EVT11 = 11
    EVT12 = 12
    EVT13 = 13
    EVT14 = 14
    EVT15 = 15
    EVT16 = 16
    EVT17 = 17
    EVT18 = 18
    EVT19 = 19

    @property
    def description(self) -> str:
        """The primitive, PDU or transport occurrence this event stands for."""
        return _EVENT_DESCRIPTIONS[self]


class Action(enum.Enum):
    """PS3.8 Tables 9-6 to 9-9: the actions, valued by the standard's names."""

    AE_1 = "AE-1"
    AE_2 = "AE-2"
    AE_3 = "AE-3"
    AE_4 = "AE-4"
    AE_5 = "AE-5"
    AE_6 = "AE-6"
    AE_7 = "AE-7"
    AE_8 = "AE-8"
    DT_1 = "DT-1"
    DT_2 = "DT-2"
    AR_1 = "AR-1"
    AR_2 = "AR-2"
    AR_3 = "AR-3"
    AR_4 = "AR-4"
    AR_5 = "AR-5"
    AR_6 = "AR-6"
    AR_7 = "AR-7"
    AR_8 = "AR-8"
    AR_9 = "AR-9"
    AR_10 = "AR-10"
    AA_1 = "AA-1"
    AA_2 = "AA-2"
    AA_3 = "AA-3"
    AA_4 = "AA-4"
    AA_5 = "AA-5"
    AA_6 = "AA-6"
    AA_7 = "AA-7"
    AA_8 = "AA-8"

    @property
    def description(self) -> str:
        """The action as PS3.8 defines it."""
        return _ACTION_DESCRIPTIONS[self]


class Effect(enum.Enum):
    """One thing the runtime must do; a transition lists them in order."""

    OPEN_TRANSPORT = "open_transport"
    ACCEPT_TRANSPORT = "accept_transport"
    SEND_ASSOCIATE_RQ = "send_associate_rq"
    SEND_ASSOCIATE_AC = "send_associate_ac"
    SEND_ASSOCIATE_RJ = "send_associate_rj"
    SEND_P_DATA = "send_p_data"
    SEND_RELEASE_RQ = "send_release_rq"
    SEND_RELEASE_RP = "send_release_rp"
    SEND_ABORT = "send_abort"
    INDICATE_ASSOCIATE = "indicate_associate"
    CONFIRM_ASSOCIATE_ACCEPT = "confirm_associate_accept"
    CONFIRM_ASSOCIATE_REJECT = "confirm_associate_reject"
    INDICATE_P_DATA = "indicate_p_data"
    INDICATE_RELEASE = "indicate_release"
    CONFIRM_RELEASE = "confirm_release"
    INDICATE_ABORT = "indicate_abort"
    INDICATE_P_ABORT = "indicate_p_abort"
    START_ARTIM = "start_artim"
    STOP_ARTIM = "stop_artim"
    CLOSE_TRANSPORT = "close_transport"

    @property
    def description(self) -> str:
        """What the runtime does for this effect."""
        return _EFFECT_DESCRIPTIONS[self]


class Condition(enum.Enum):
    """What a branching action's outcome depends on (PS3.8 Tables 9-6 to 9-9).

    Members come in complementary pairs; ``ALWAYS`` keys the single outcome
    of an action that does not branch.
    """

    ALWAYS = "always"
    ASSOCIATE_RQ_ACCEPTABLE = "associate_rq_acceptable"
    ASSOCIATE_RQ_NOT_ACCEPTABLE = "associate_rq_not_acceptable"
    ASSOCIATION_REQUESTOR = "association_requestor"
    ASSOCIATION_ACCEPTOR = "association_acceptor"
    ABORT_FROM_SERVICE_USER = "abort_from_service_user"
    ABORT_FROM_SERVICE_PROVIDER = "abort_from_service_provider"
    ARTIM_RUNNING = "artim_running"
    ARTIM_NOT_RUNNING = "artim_not_running"

    @property
    def description(self) -> str:
        """When this condition holds."""
        return _CONDITION_DESCRIPTIONS[self]


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """One branch of an action: its effects, in order, and the next state."""

    effects: tuple[Effect, ...]
    next_state: State


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    """What one event did: the cell of Table 9-10 and the chosen outcome."""

    current_state: State
    event: Event
    action: Action
    next_state: State
    effects: tuple[Effect, ...]


_STATE_DESCRIPTIONS: Final[Mapping[State, str]] = MappingProxyType(
    {
        State.STA1: "Idle: no association and no transport connection",
        State.STA2: "Transport connection open; awaiting the peer's A-ASSOCIATE-RQ PDU",
        State.STA3: "Awaiting the local user's A-ASSOCIATE response primitive",
        State.STA4: "Awaiting the local transport service to finish opening the connection",
        State.STA5: "Awaiting the peer's A-ASSOCIATE-AC or A-ASSOCIATE-RJ PDU",
        State.STA6: "Association established; ready for data transfer",
        State.STA7: "Awaiting the peer's A-RELEASE-RP PDU",
        State.STA8: "Awaiting the local user's A-RELEASE response primitive",
        State.STA9: "Release collision, requestor side: awaiting the local user's "
        "A-RELEASE response primitive",
        State.STA10: "Release collision, acceptor side: awaiting the peer's A-RELEASE-RP PDU",
        State.STA11: "Release collision, requestor side: awaiting the peer's A-RELEASE-RP PDU",
        State.STA12: "Release collision, acceptor side: awaiting the local user's "
        "A-RELEASE response primitive",
        State.STA13: "Awaiting the transport connection to close; the association is gone",
    }
)

_EVENT_DESCRIPTIONS: Final[Mapping[Event, str]] = MappingProxyType(
    {
        Event.EVT1: "A-ASSOCIATE request primitive from the local user",
        Event.EVT2: "Transport connection confirmation from the local transport service",
        Event.EVT3: "A-ASSOCIATE-AC PDU received",
        Event.EVT4: "A-ASSOCIATE-RJ PDU received",
        Event.EVT5: "Transport connection indication (a peer connected to us)",
        Event.EVT6: "A-ASSOCIATE-RQ PDU received",
        Event.EVT7: "A-ASSOCIATE response primitive (accept) from the local user",
        Event.EVT8: "A-ASSOCIATE response primitive (reject) from the local user",
        Event.EVT9: "P-DATA request primitive from the local user",
        Event.EVT10: "P-DATA-TF PDU received",
        Event.EVT11: "A-RELEASE request primitive from the local user",
        Event.EVT12: "A-RELEASE-RQ PDU received",
        Event.EVT13: "A-RELEASE-RP PDU received",
        Event.EVT14: "A-RELEASE response primitive from the local user",
        Event.EVT15: "A-ABORT request primitive from the local user",
        Event.EVT16: "A-ABORT PDU received",
        Event.EVT17: "Transport connection closed indication",
        Event.EVT18: "ARTIM timer expired",
        Event.EVT19: "Unrecognized or invalid PDU received",
    }
)

_ACTION_DESCRIPTIONS: Final[Mapping[Action, str]] = MappingProxyType(
    {
        Action.AE_1: "Ask the local transport service to connect to the peer",
        Action.AE_2: "Send the A-ASSOCIATE-RQ PDU",
        Action.AE_3: "Confirm to the local user that the peer accepted the association",
        Action.AE_4: "Confirm to the local user that the peer rejected the association, "
        "and close the transport connection",
        Action.AE_5: "Accept the incoming transport connection and start ARTIM",
        Action.AE_6: "Stop ARTIM; if the service provider finds the A-ASSOCIATE-RQ "
        "acceptable, indicate it to the local user, otherwise send an A-ASSOCIATE-RJ PDU "
        "and start ARTIM",
        Action.AE_7: "Send the A-ASSOCIATE-AC PDU",
        Action.AE_8: "Send the A-ASSOCIATE-RJ PDU and start ARTIM",
        Action.DT_1: "Send a P-DATA-TF PDU",
        Action.DT_2: "Indicate received P-DATA to the local user",
        Action.AR_1: "Send the A-RELEASE-RQ PDU",
        Action.AR_2: "Indicate the peer's A-RELEASE request to the local user",
        Action.AR_3: "Confirm the release to the local user and close the transport connection",
        Action.AR_4: "Send the A-RELEASE-RP PDU and start ARTIM",
        Action.AR_5: "Stop ARTIM",
        Action.AR_6: "Indicate received P-DATA to the local user while awaiting A-RELEASE-RP",
        Action.AR_7: "Send a P-DATA-TF PDU while the peer awaits our A-RELEASE-RP",
        Action.AR_8: "Release collision: indicate the peer's A-RELEASE request to the local user",
        Action.AR_9: "Send the A-RELEASE-RP PDU (release collision, requestor side)",
        Action.AR_10: "Confirm the release to the local user (release collision, acceptor side)",
        Action.AA_1: "Send an A-ABORT PDU and start (or restart) ARTIM",
        Action.AA_2: "Stop ARTIM if it runs and close the transport connection",
        Action.AA_3: "Indicate the peer's abort to the local user (A-ABORT if the peer's user "
        "aborted, A-P-ABORT if its provider did) and close the transport connection",
        Action.AA_4: "Indicate an A-P-ABORT to the local user",
        Action.AA_5: "Stop ARTIM",
        Action.AA_6: "Ignore the PDU",
        Action.AA_7: "Send an A-ABORT PDU",
        Action.AA_8: "Send an A-ABORT PDU (service-provider source), indicate an A-P-ABORT to "
        "the local user and start ARTIM",
    }
)

_EFFECT_DESCRIPTIONS: Final[Mapping[Effect, str]] = MappingProxyType(
    {
        Effect.OPEN_TRANSPORT: "Start connecting to the peer; feed back EVT2 once connected, "
        "EVT17 if the attempt fails",
        Effect.ACCEPT_TRANSPORT: "Accept the peer's incoming transport connection",
        Effect.SEND_ASSOCIATE_RQ: "Send the A-ASSOCIATE-RQ PDU",
        Effect.SEND_ASSOCIATE_AC: "Send the A-ASSOCIATE-AC PDU",
        Effect.SEND_ASSOCIATE_RJ: "Send an A-ASSOCIATE-RJ PDU",
        Effect.SEND_P_DATA: "Send the P-DATA-TF PDU the local user asked for",
        Effect.SEND_RELEASE_RQ: "Send the A-RELEASE-RQ PDU",
        Effect.SEND_RELEASE_RP: "Send the A-RELEASE-RP PDU",
        Effect.SEND_ABORT: "Send an A-ABORT PDU; its source and reason come from the local "
        "user's request or from the error that made the event",
        Effect.INDICATE_ASSOCIATE: "Hand the received A-ASSOCIATE-RQ to the local user, "
        "who answers with EVT7 (accept) or EVT8 (reject)",
        Effect.CONFIRM_ASSOCIATE_ACCEPT: "Tell the local user the peer accepted the association",
        Effect.CONFIRM_ASSOCIATE_REJECT: "Tell the local user the peer rejected the association",
        Effect.INDICATE_P_DATA: "Hand the received P-DATA-TF PDU to the local user",
        Effect.INDICATE_RELEASE: "Tell the local user the peer asked for release; "
        "it answers with EVT14",
        Effect.CONFIRM_RELEASE: "Tell the local user the association is released",
        Effect.INDICATE_ABORT: "Tell the local user the peer's service user aborted (A-ABORT)",
        Effect.INDICATE_P_ABORT: "Tell the local user the service provider aborted (A-P-ABORT)",
        Effect.START_ARTIM: "Arm the ARTIM timer; feed back EVT18 when it expires",
        Effect.STOP_ARTIM: "Disarm the ARTIM timer (a no-op if it has just expired)",
        Effect.CLOSE_TRANSPORT: "Close the transport connection",
    }
)

_CONDITION_DESCRIPTIONS: Final[Mapping[Condition, str]] = MappingProxyType(
    {
        Condition.ALWAYS: "The action does not branch",
        Condition.ASSOCIATE_RQ_ACCEPTABLE: "The service provider can accept the "
        "A-ASSOCIATE-RQ (e.g. it names a known called AE title)",
        Condition.ASSOCIATE_RQ_NOT_ACCEPTABLE: "The service provider rejects the "
        "A-ASSOCIATE-RQ itself, without asking the local user",
        Condition.ASSOCIATION_REQUESTOR: "This side requested the association",
        Condition.ASSOCIATION_ACCEPTOR: "This side accepted the association",
        Condition.ABORT_FROM_SERVICE_USER: "The received A-ABORT PDU has the service-user source",
        Condition.ABORT_FROM_SERVICE_PROVIDER: "The received A-ABORT PDU has the "
        "service-provider source",
        Condition.ARTIM_RUNNING: "The ARTIM timer is armed (in Sta2 and Sta13)",
        Condition.ARTIM_NOT_RUNNING: "The ARTIM timer is not armed (outside Sta2 and Sta13)",
    }
)

# PS3.8 9.2.3: the events that come from our own user; every other event comes
# from the peer, the transport or the ARTIM timer. An empty cell met by one of
# these is a bug in our own caller, not in the peer.
LOCAL_USER_EVENTS: Final[frozenset[Event]] = frozenset(
    {Event.EVT1, Event.EVT7, Event.EVT8, Event.EVT9, Event.EVT11, Event.EVT14, Event.EVT15}
)

# Only AE-5, AE-6 (reject), AE-8, AR-4, AA-1 and AA-8 start ARTIM, and each
# leads to Sta2 or Sta13; every way out of those two states (AE-6, AA-2, AA-5,
# AR-5) stops it. So ARTIM runs exactly in these states, and the state alone
# decides the "start or restart" of AA-1 and the "if running" of AA-2.
ARTIM_RUNNING_STATES: Final[frozenset[State]] = frozenset({State.STA2, State.STA13})

_S = State
_E = Event
_A = Action

# PS3.8 Table 9-10, transcribed cell by cell, one event (row) at a time.
TRANSITIONS: Final[Mapping[tuple[State, Event], Action]] = MappingProxyType(
    {
        # Evt1: A-ASSOCIATE request (local user)
        (_S.STA1, _E.EVT1): _A.AE_1,
        # Evt2: transport connect confirmation
        (_S.STA4, _E.EVT2): _A.AE_2,
        # Evt3: A-ASSOCIATE-AC PDU received
        (_S.STA2, _E.EVT3): _A.AA_1,
        (_S.STA3, _E.EVT3): _A.AA_8,
        (_S.STA5, _E.EVT3): _A.AE_3,
        (_S.STA6, _E.EVT3): _A.AA_8,
        (_S.STA7, _E.EVT3): _A.AA_8,
        (_S.STA8, _E.EVT3): _A.AA_8,
        (_S.STA9, _E.EVT3): _A.AA_8,
        (_S.STA10, _E.EVT3): _A.AA_8,
        (_S.STA11, _E.EVT3): _A.AA_8,
        (_S.STA12, _E.EVT3): _A.AA_8,
        (_S.STA13, _E.EVT3): _A.AA_6,
        # Evt4: A-ASSOCIATE-RJ PDU received
        (_S.STA2, _E.EVT4): _A.AA_1,
        (_S.STA3, _E.EVT4): _A.AA_8,
        (_S.STA5, _E.EVT4): _A.AE_4,
        (_S.STA6, _E.EVT4): _A.AA_8,
        (_S.STA7, _E.EVT4): _A.AA_8,
        (_S.STA8, _E.EVT4): _A.AA_8,
        (_S.STA9, _E.EVT4): _A.AA_8,
        (_S.STA10, _E.EVT4): _A.AA_8,
        (_S.STA11, _E.EVT4): _A.AA_8,
        (_S.STA12, _E.EVT4): _A.AA_8,
        (_S.STA13, _E.EVT4): _A.AA_6,
        # Evt5: transport connection indication
        (_S.STA1, _E.EVT5): _A.AE_5,
        # Evt6: A-ASSOCIATE-RQ PDU received
        (_S.STA2, _E.EVT6): _A.AE_6,
        (_S.STA3, _E.EVT6): _A.AA_8,
        (_S.STA5, _E.EVT6): _A.AA_8,
        (_S.STA6, _E.EVT6): _A.AA_8,
        (_S.STA7, _E.EVT6): _A.AA_8,
        (_S.STA8, _E.EVT6): _A.AA_8,
        (_S.STA9, _E.EVT6): _A.AA_8,
        (_S.STA10, _E.EVT6): _A.AA_8,
        (_S.STA11, _E.EVT6): _A.AA_8,
        (_S.STA12, _E.EVT6): _A.AA_8,
        (_S.STA13, _E.EVT6): _A.AA_7,
        # Evt7: A-ASSOCIATE response primitive (accept)
        (_S.STA3, _E.EVT7): _A.AE_7,
        # Evt8: A-ASSOCIATE response primitive (reject)
        (_S.STA3, _E.EVT8): _A.AE_8,
        # Evt9: P-DATA request primitive
        (_S.STA6, _E.EVT9): _A.DT_1,
        (_S.STA8, _E.EVT9): _A.AR_7,
        # Evt10: P-DATA-TF PDU received
        (_S.STA2, _E.EVT10): _A.AA_1,
        (_S.STA3, _E.EVT10): _A.AA_8,
        (_S.STA5, _E.EVT10): _A.AA_8,
        (_S.STA6, _E.EVT10): _A.DT_2,
        (_S.STA7, _E.EVT10): _A.AR_6,
        (_S.STA8, _E.EVT10): _A.AA_8,
        (_S.STA9, _E.EVT10): _A.AA_8,
        (_S.STA10, _E.EVT10): _A.AA_8,
        (_S.STA11, _E.EVT10): _A.AA_8,
        (_S.STA12, _E.EVT10): _A.AA_8,
        (_S.STA13, _E.EVT10): _A.AA_6,
        # Evt11: A-RELEASE request primitive
        (_S.STA6, _E.EVT11): _A.AR_1,
        # Evt12: A-RELEASE-RQ PDU received
        (_S.STA2, _E.EVT12): _A.AA_1,
        (_S.STA3, _E.EVT12): _A.AA_8,
        (_S.STA5, _E.EVT12): _A.AA_8,
        (_S.STA6, _E.EVT12): _A.AR_2,
        (_S.STA7, _E.EVT12): _A.AR_8,
        (_S.STA8, _E.EVT12): _A.AA_8,
        (_S.STA9, _E.EVT12): _A.AA_8,
        (_S.STA10, _E.EVT12): _A.AA_8,
        (_S.STA11, _E.EVT12): _A.AA_8,
        (_S.STA12, _E.EVT12): _A.AA_8,
        (_S.STA13, _E.EVT12): _A.AA_6,
        # Evt13: A-RELEASE-RP PDU received
        (_S.STA2, _E.EVT13): _A.AA_1,
        (_S.STA3, _E.EVT13): _A.AA_8,
        (_S.STA5, _E.EVT13): _A.AA_8,
        (_S.STA6, _E.EVT13): _A.AA_8,
        (_S.STA7, _E.EVT13): _A.AR_3,
        (_S.STA8, _E.EVT13): _A.AA_8,
        (_S.STA9, _E.EVT13): _A.AA_8,
        (_S.STA10, _E.EVT13): _A.AR_10,
        (_S.STA11, _E.EVT13): _A.AR_3,
        (_S.STA12, _E.EVT13): _A.AA_8,
        (_S.STA13, _E.EVT13): _A.AA_6,
        # Evt14: A-RELEASE response primitive
        (_S.STA8, _E.EVT14): _A.AR_4,
        (_S.STA9, _E.EVT14): _A.AR_9,
        (_S.STA12, _E.EVT14): _A.AR_4,
        # Evt15: A-ABORT request primitive
        (_S.STA3, _E.EVT15): _A.AA_1,
        (_S.STA4, _E.EVT15): _A.AA_2,
        (_S.STA5, _E.EVT15): _A.AA_1,
        (_S.STA6, _E.EVT15): _A.AA_1,
        (_S.STA7, _E.EVT15): _A.AA_1,
        (_S.STA8, _E.EVT15): _A.AA_1,
        (_S.STA9, _E.EVT15): _A.AA_1,
        (_S.STA10, _E.EVT15): _A.AA_1,
        (_S.STA11, _E.EVT15): _A.AA_1,
        (_S.STA12, _E.EVT15): _A.AA_1,
        # Evt16: A-ABORT PDU received
        (_S.STA2, _E.EVT16): _A.AA_2,
        (_S.STA3, _E.EVT16): _A.AA_3,
        (_S.STA5, _E.EVT16): _A.AA_3,
        (_S.STA6, _E.EVT16): _A.AA_3,
        (_S.STA7, _E.EVT16): _A.AA_3,
        (_S.STA8, _E.EVT16): _A.AA_3,
        (_S.STA9, _E.EVT16): _A.AA_3,
        (_S.STA10, _E.EVT16): _A.AA_3,
        (_S.STA11, _E.EVT16): _A.AA_3,
        (_S.STA12, _E.EVT16): _A.AA_3,
        (_S.STA13, _E.EVT16): _A.AA_2,
        # Evt17: transport connection closed indication
        (_S.STA2, _E.EVT17): _A.AA_5,
        (_S.STA3, _E.EVT17): _A.AA_4,
        (_S.STA4, _E.EVT17): _A.AA_4,
        (_S.STA5, _E.EVT17): _A.AA_4,
        (_S.STA6, _E.EVT17): _A.AA_4,
        (_S.STA7, _E.EVT17): _A.AA_4,
        (_S.STA8, _E.EVT17): _A.AA_4,
        (_S.STA9, _E.EVT17): _A.AA_4,
        (_S.STA10, _E.EVT17): _A.AA_4,
        (_S.STA11, _E.EVT17): _A.AA_4,
        (_S.STA12, _E.EVT17): _A.AA_4,
        (_S.STA13, _E.EVT17): _A.AR_5,
        # Evt18: ARTIM timer expired
        (_S.STA2, _E.EVT18): _A.AA_2,
        (_S.STA13, _E.EVT18): _A.AA_2,
        # Evt19: unrecognized or invalid PDU received
        (_S.STA2, _E.EVT19): _A.AA_1,
        (_S.STA3, _E.EVT19): _A.AA_8,
        (_S.STA5, _E.EVT19): _A.AA_8,
        (_S.STA6, _E.EVT19): _A.AA_8,
        (_S.STA7, _E.EVT19): _A.AA_8,
        (_S.STA8, _E.EVT19): _A.AA_8,
        (_S.STA9, _E.EVT19): _A.AA_8,
        (_S.STA10, _E.EVT19): _A.AA_8,
        (_S.STA11, _E.EVT19): _A.AA_8,
        (_S.STA12, _E.EVT19): _A.AA_8,
        (_S.STA13, _E.EVT19): _A.AA_7,
    }
)


def _always(next_state: State, *effects: Effect) -> Mapping[Condition, Outcome]:
    """The single outcome of an action that does not branch."""
    return MappingProxyType({Condition.ALWAYS: Outcome(effects=effects, next_state=next_state)})


def _branch(*branches: tuple[Condition, State, tuple[Effect, ...]]) -> Mapping[Condition, Outcome]:
    """The outcomes of a branching action, one per condition."""
    return MappingProxyType(
        {
            condition: Outcome(effects=effects, next_state=next_state)
            for condition, next_state, effects in branches
        }
    )


_F = Effect
_C = Condition

# PS3.8 Tables 9-6 (AE), 9-7 (DT), 9-8 (AR) and 9-9 (AA): each action's effects,
# in the order the standard lists them, and its next state.
ACTION_EFFECTS: Final[Mapping[Action, Mapping[Condition, Outcome]]] = MappingProxyType(
    {
        _A.AE_1: _always(_S.STA4, _F.OPEN_TRANSPORT),
        _A.AE_2: _always(_S.STA5, _F.SEND_ASSOCIATE_RQ),
        _A.AE_3: _always(_S.STA6, _F.CONFIRM_ASSOCIATE_ACCEPT),
        _A.AE_4: _always(_S.STA1, _F.CONFIRM_ASSOCIATE_REJECT, _F.CLOSE_TRANSPORT),
        _A.AE_5: _always(_S.STA2, _F.ACCEPT_TRANSPORT, _F.START_ARTIM),
        _A.AE_6: _branch(
            (_C.ASSOCIATE_RQ_ACCEPTABLE, _S.STA3, (_F.STOP_ARTIM, _F.INDICATE_ASSOCIATE)),
            (
                _C.ASSOCIATE_RQ_NOT_ACCEPTABLE,
                _S.STA13,
                (_F.STOP_ARTIM, _F.SEND_ASSOCIATE_RJ, _F.START_ARTIM),
            ),
        ),
        _A.AE_7: _always(_S.STA6, _F.SEND_ASSOCIATE_AC),
        _A.AE_8: _always(_S.STA13, _F.SEND_ASSOCIATE_RJ, _F.START_ARTIM),
        _A.DT_1: _always(_S.STA6, _F.SEND_P_DATA),
        _A.DT_2: _always(_S.STA6, _F.INDICATE_P_DATA),
        _A.AR_1: _always(_S.STA7, _F.SEND_RELEASE_RQ),
        _A.AR_2: _always(_S.STA8, _F.INDICATE_RELEASE),
        _A.AR_3: _always(_S.STA1, _F.CONFIRM_RELEASE, _F.CLOSE_TRANSPORT),
        _A.AR_4: _always(_S.STA13, _F.SEND_RELEASE_RP, _F.START_ARTIM),
        _A.AR_5: _always(_S.STA1, _F.STOP_ARTIM),
        _A.AR_6: _always(_S.STA7, _F.INDICATE_P_DATA),
        _A.AR_7: _always(_S.STA8, _F.SEND_P_DATA),
        # PS3.8 Table 9-8: in a release collision the requestor answers first
        # (Sta9 -> Sta11) while the acceptor waits for that answer (Sta10).
        _A.AR_8: _branch(
            (_C.ASSOCIATION_REQUESTOR, _S.STA9, (_F.INDICATE_RELEASE,)),
            (_C.ASSOCIATION_ACCEPTOR, _S.STA10, (_F.INDICATE_RELEASE,)),
        ),
        _A.AR_9: _always(_S.STA11, _F.SEND_RELEASE_RP),
        _A.AR_10: _always(_S.STA12, _F.CONFIRM_RELEASE),
        # PS3.8 Table 9-9: "start (or restart if already started) ARTIM"; a
        # restart is a stop then a start, so the runtime needs no third verb.
        _A.AA_1: _branch(
            (_C.ARTIM_NOT_RUNNING, _S.STA13, (_F.SEND_ABORT, _F.START_ARTIM)),
            (_C.ARTIM_RUNNING, _S.STA13, (_F.SEND_ABORT, _F.STOP_ARTIM, _F.START_ARTIM)),
        ),
        _A.AA_2: _branch(
            (_C.ARTIM_RUNNING, _S.STA1, (_F.STOP_ARTIM, _F.CLOSE_TRANSPORT)),
            (_C.ARTIM_NOT_RUNNING, _S.STA1, (_F.CLOSE_TRANSPORT,)),
        ),
        _A.AA_3: _branch(
            (_C.ABORT_FROM_SERVICE_USER, _S.STA1, (_F.INDICATE_ABORT, _F.CLOSE_TRANSPORT)),
            (_C.ABORT_FROM_SERVICE_PROVIDER, _S.STA1, (_F.INDICATE_P_ABORT, _F.CLOSE_TRANSPORT)),
        ),
        _A.AA_4: _always(_S.STA1, _F.INDICATE_P_ABORT),
        _A.AA_5: _always(_S.STA1, _F.STOP_ARTIM),
        _A.AA_6: _always(_S.STA13),
        _A.AA_7: _always(_S.STA13, _F.SEND_ABORT),
        _A.AA_8: _always(_S.STA13, _F.SEND_ABORT, _F.INDICATE_P_ABORT, _F.START_ARTIM),
    }
)


def conditions_holding(
    *,
    current_state: State,
    is_requestor: bool,
    associate_rq_acceptable: bool,
    abort_from_service_user: bool,
) -> frozenset[Condition]:
    """The conditions true right now: ``ALWAYS`` and one of each pair."""
    return frozenset(
        {
            Condition.ALWAYS,
            Condition.ASSOCIATE_RQ_ACCEPTABLE
            if associate_rq_acceptable
            else Condition.ASSOCIATE_RQ_NOT_ACCEPTABLE,
            Condition.ASSOCIATION_REQUESTOR if is_requestor else Condition.ASSOCIATION_ACCEPTOR,
            Condition.ABORT_FROM_SERVICE_USER
            if abort_from_service_user
            else Condition.ABORT_FROM_SERVICE_PROVIDER,
            Condition.ARTIM_RUNNING
            if current_state in ARTIM_RUNNING_STATES
            else Condition.ARTIM_NOT_RUNNING,
        }
    )


def action_outcome(action: Action, conditions: Set[Condition]) -> Outcome:
    """The one branch of ``action`` that ``conditions`` select.

    Raises LocalProtocolError if they select none or several: the caller
    passed an inconsistent set (see ``conditions_holding``).
    """
    chosen = [
        outcome for condition, outcome in ACTION_EFFECTS[action].items() if condition in conditions
    ]
    if len(chosen) != 1:
        names = ", ".join(sorted(condition.name for condition in conditions))
        raise LocalProtocolError(
            f"{action.value}: conditions {{{names}}} select {len(chosen)} outcomes, not one"
        )
    return chosen[0]


def transition_for(
    current_state: State,
    event: Event,
    *,
    is_requestor: bool,
    associate_rq_acceptable: bool = True,
    abort_from_service_user: bool = True,
) -> Transition:
    """What ``event`` does in ``current_state``; pure, changes nothing.

    Raises LocalProtocolError for a local-user event the table does not allow
    there, RemoteProtocolError (A-ABORT reason: unexpected PDU) for any other.
    """
    action = TRANSITIONS.get((current_state, event))
    if action is None:
        raise _not_allowed(current_state, event)
    conditions = conditions_holding(
        current_state=current_state,
        is_requestor=is_requestor,
        associate_rq_acceptable=associate_rq_acceptable,
        abort_from_service_user=abort_from_service_user,
    )
    outcome = action_outcome(action, conditions)
    return Transition(
        current_state=current_state,
        event=event,
        action=action,
        next_state=outcome.next_state,
        effects=outcome.effects,
    )


def _not_allowed(state: State, event: Event) -> LocalProtocolError | RemoteProtocolError:
    """The error for an empty cell of PS3.8 Table 9-10."""
    message = (
        f"{event.name} ({event.description}) is not allowed in {state.name} "
        f"({state.description}): PS3.8 Table 9-10 has no action for it"
    )
    if event in LOCAL_USER_EVENTS:
        return LocalProtocolError(message)
    return RemoteProtocolError(
        message,
        abort_source=AbortSource.SERVICE_PROVIDER,
        abort_reason=AbortReason.UNEXPECTED_PDU,
    )


# transition_for is a pure function of these five values, and a Transition is
# frozen: each is computed once per process (at most 13 x 19 x 8 of them), so a
# P-DATA-TF costs a dictionary lookup, not the conditions and the table walk.
_TRANSITION_CACHE: dict[tuple[State, Event, bool, bool, bool], Transition] = {}


class StateMachine:
    """One association's Upper Layer state; starts idle in Sta1.

    ``handle`` computes each transition from the tables and moves to its next
    state; the caller performs the effects. A refused event leaves the state
    as it was.
    """

    __slots__ = ("_is_requestor", "_state")

    def __init__(self, *, is_requestor: bool) -> None:
        self._is_requestor = is_requestor
        self._state = State.STA1

    @property
    def state(self) -> State:
        """The current state."""
        return self._state

    @property
    def is_requestor(self) -> bool:
        """Whether this side requested the association (decides AR-8)."""
        return self._is_requestor

    def handle(
        self,
        event: Event,
        *,
        associate_rq_acceptable: bool = True,
        abort_from_service_user: bool = True,
    ) -> Transition:
        """Apply ``event``; return the transition whose effects the caller must carry out.

        ``associate_rq_acceptable`` matters only for EVT6 in Sta2 (AE-6) and
        ``abort_from_service_user`` only for EVT16 (AA-3): the A-ABORT PDU's
        source field.
        """
        key = (
            self._state,
            event,
            self._is_requestor,
            associate_rq_acceptable,
            abort_from_service_user,
        )
        transition = _TRANSITION_CACHE.get(key)
        if transition is None:
            transition = transition_for(
                self._state,
                event,
                is_requestor=self._is_requestor,
                associate_rq_acceptable=associate_rq_acceptable,
                abort_from_service_user=abort_from_service_user,
            )
            _TRANSITION_CACHE[key] = transition
        self._state = transition.next_state
        return transition

    def __repr__(self) -> str:
        role = "requestor" if self._is_requestor else "acceptor"
        return f"<StateMachine {role} {self._state.name}>"
