"""Sessions: one call UUID, one call pair, legs that may drop and come back."""

from gatekeeper.session.callpair import (
    AttemptResult,
    CallPair,
    ContextMismatchError,
    Leg,
    LegState,
    Outcome,
    PairState,
    ResidentAttempt,
    Role,
    VisitContext,
)
from gatekeeper.session.interfaces import IPairListener, PairListenerFactory
from gatekeeper.session.registry import (
    REFUSAL_REASONS,
    RegistryCounters,
    ResidentAlreadyBoundError,
    SessionRegistry,
    UnknownCallError,
)
from gatekeeper.session.uuids import InvalidCallUUID, canonical_uuid, is_canonical_uuid

__all__ = [
    "REFUSAL_REASONS",
    "AttemptResult",
    "CallPair",
    "ContextMismatchError",
    "IPairListener",
    "InvalidCallUUID",
    "Leg",
    "LegState",
    "Outcome",
    "PairListenerFactory",
    "PairState",
    "RegistryCounters",
    "ResidentAlreadyBoundError",
    "ResidentAttempt",
    "Role",
    "SessionRegistry",
    "UnknownCallError",
    "VisitContext",
    "canonical_uuid",
    "is_canonical_uuid",
]
