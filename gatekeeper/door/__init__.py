"""
Opening the door once a resident says yes.

The visit flow holds one :class:`IDoorOpener` and calls
``open(call_uuid, apartment, DoorContext(gate=..., visitor_channel=...))``.
The Deferred always fires with a :class:`DoorResult`, never an error: a door
that did not open is something to record and tell the visitor.  Which opener
runs is configuration (:func:`door_opener_from_section`): ``http`` (a relay
URL), ``dtmf`` (a code played on the intercom's call), ``command`` (a local
program) or ``none``; :class:`GateDoorOpener` gives each gate its own.
"""

from gatekeeper.door.command import CommandDoorOpener
from gatekeeper.door.dtmf import DTMFDoorOpener
from gatekeeper.door.gates import GateDoorOpener
from gatekeeper.door.http import HTTPDoorOpener
from gatekeeper.door.interfaces import IDoorOpener, IDTMFPlayer
from gatekeeper.door.none import NoDoorOpener
from gatekeeper.door.result import (
    FAILED,
    NOT_CONFIGURED,
    OPENED,
    DoorContext,
    DoorResult,
)
from gatekeeper.door.settings import DoorSettingsError, door_opener_from_section

__all__ = [
    "FAILED",
    "NOT_CONFIGURED",
    "OPENED",
    "CommandDoorOpener",
    "DTMFDoorOpener",
    "DoorContext",
    "DoorResult",
    "DoorSettingsError",
    "GateDoorOpener",
    "HTTPDoorOpener",
    "IDTMFPlayer",
    "IDoorOpener",
    "NoDoorOpener",
    "door_opener_from_section",
]
