"""
What the visit flow needs from a door opener, and what the ``dtmf`` opener
needs from the AMI dialer.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface

__all__ = ["IDTMFPlayer", "IDoorOpener"]


class IDoorOpener(Interface):
    """Opens the gate when a resident allows a visitor in."""

    name = Attribute("The configured mode: 'http', 'dtmf', 'command' or 'none'.")

    def open(call_uuid, apartment, context):
        """
        Try to open the door for the visit ``call_uuid`` to ``apartment``.

        ``context`` is a :class:`gatekeeper.door.DoorContext`.  Returns a
        Deferred that fires with a :class:`gatekeeper.door.DoorResult` and
        never fails: a door that did not open is a result to record and tell
        the visitor, not an exception.
        """


class IDTMFPlayer(Interface):
    """Plays DTMF on a channel (the AMI dialer, with ``PlayDTMF``)."""

    def play_dtmf(channel, digits):
        """
        Play ``digits`` on ``channel``, one after another.

        Returns a Deferred that fires (with anything) once Asterisk accepted
        them, or fails if it refused or cannot be reached.
        """
