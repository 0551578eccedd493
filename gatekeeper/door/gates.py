"""One door per gate: a concierge company's gates each have their own relay."""

from __future__ import annotations

from collections.abc import Mapping

from twisted.internet.defer import Deferred
from zope.interface import implementer

from gatekeeper.door.interfaces import IDoorOpener
from gatekeeper.door.result import DoorContext, DoorResult

__all__ = ["GateDoorOpener"]


@implementer(IDoorOpener)
class GateDoorOpener:
    """Hands each visit to its gate's opener, or the default one."""

    name = "per_gate"

    def __init__(self, default: IDoorOpener, gates: Mapping[str, IDoorOpener]) -> None:
        self._default = IDoorOpener(default)
        self._gates = {gate: IDoorOpener(opener) for gate, opener in gates.items()}

    def opener_for(self, gate: str | None) -> IDoorOpener:
        """The opener that would serve ``gate``."""
        if gate is None:
            return self._default
        return self._gates.get(gate, self._default)

    def open(
        self, call_uuid: str, apartment: str, context: DoorContext
    ) -> Deferred[DoorResult]:
        return self.opener_for(context.gate).open(call_uuid, apartment, context)
