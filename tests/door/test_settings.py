"""Tests for building a door opener from the ``[door]`` section."""

from __future__ import annotations

import sys

from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from gatekeeper.door import (
    CommandDoorOpener,
    DoorSettingsError,
    DTMFDoorOpener,
    HTTPDoorOpener,
    IDTMFPlayer,
    NoDoorOpener,
    door_opener_from_section,
)


@implementer(IDTMFPlayer)
class Player:
    """A DTMF player that accepts everything."""

    def play_dtmf(self, channel: str, digits: str) -> Deferred[None]:
        return succeed(None)


class SettingsTests(SynchronousTestCase):
    """Each mode builds its opener; mistakes name the key."""

    def build(self, section: dict[str, str], **kw: object):  # type: ignore[no-untyped-def]
        kw.setdefault("environ", {})
        return door_opener_from_section(section, reactor=MemoryReactorClock(), **kw)  # type: ignore[arg-type]

    def assertRefused(self, section: dict[str, str], words: str, **kw: object) -> None:
        with self.assertRaises(DoorSettingsError) as caught:
            self.build(section, **kw)
        self.assertIn(words, str(caught.exception))

    def test_default_none(self) -> None:
        """No section means no opener, said plainly."""
        self.assertIsInstance(self.build({}), NoDoorOpener)

    def test_each_mode(self) -> None:
        """http, dtmf and command each build their opener."""
        built = [
            self.build({"mode": "http", "url": "http://relay/open", "timeout": "3"}),
            self.build({"mode": "dtmf", "digits": "1#"}, dtmf_player=Player()),
            self.build({"mode": "command", "command": f"{sys.executable} -c pass"}),
        ]
        self.assertEqual(
            [type(o) for o in built],
            [HTTPDoorOpener, DTMFDoorOpener, CommandDoorOpener],
        )

    def test_unknown_mode(self) -> None:
        """A misspelt mode is refused."""
        self.assertRefused({"mode": "relay"}, "mode = 'relay' is not one of")

    def test_key_of_other_mode(self) -> None:
        """A key the chosen mode does not use is refused (likely a typo)."""
        self.assertRefused(
            {"mode": "dtmf", "digits": "1", "url": "http://x/"},
            "url: not used",
            dtmf_player=Player(),
        )

    def test_bad_timeout(self) -> None:
        """A non-positive timeout is refused."""
        self.assertRefused(
            {"mode": "http", "url": "http://relay/", "timeout": "0"},
            "timeout must be above 0",
        )

    def test_password_from_environment(self) -> None:
        """GATEKEEPER_DOOR_PASSWORD supplies the password the file leaves out."""
        section = {"mode": "http", "url": "http://relay/", "username": "admin"}
        self.assertRefused(section, "no password")
        opener = self.build(section, environ={"GATEKEEPER_DOOR_PASSWORD": "pw"})
        self.assertIsInstance(opener, HTTPDoorOpener)

    def test_dtmf_needs_dialer(self) -> None:
        """dtmf mode without the AMI dialer is refused at startup."""
        self.assertRefused({"mode": "dtmf", "digits": "1"}, "needs the AMI dialer")

    def test_command_not_found(self) -> None:
        """A command that is not an executable program is refused at startup."""
        self.assertRefused(
            {"mode": "command", "command": "/nonexistent/open"}, "not an executable"
        )

    def test_invalid_url(self) -> None:
        """A URL that is not http(s) is refused with the section named."""
        self.assertRefused(
            {"mode": "http", "url": "ftp://relay/"}, "[door] the door URL"
        )
