"""
Credentials never reach a log line.

Distinctive secrets (the AMI secret, the door relay's password, the door
code, the web token and password) are used for real, with failures and
retries on purpose, under a global log observer; then every event is
formatted, serialised to JSON and walked field by field, and none may hold
a secret (nor the Basic-auth form of the relay's password).  Each test also
checks the secret really was used (it went over the AMI wire, in the HTTP
header), so a test that never touched it cannot pass by accident.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from attrs import evolve
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.task import Clock
from twisted.logger import (
    ILogObserver,
    eventAsJSON,
    formatEvent,
    globalLogPublisher,
)
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseDone
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent
from zope.interface import implementer

from gatekeeper.config import parse_config
from gatekeeper.dialer import AMIDialer, Secret
from gatekeeper.door import (
    DoorContext,
    DTMFDoorOpener,
    HTTPDoorOpener,
    IDTMFPlayer,
    door_opener_from_section,
)
from gatekeeper.web.auth import Authenticator, hash_password
from tests.dialer.test_ami import parse_messages
from tests.dialer.test_dialer import BANNER, FakeEndpoint, recorded_settings
from tests.flow.rig import CALL, Rig

AMI_SECRET = "ami-Zq8vW3-never-log-me"
DOOR_USER = "relayadmin"
DOOR_PASSWORD = "door-Kp5rT9-never-log-me"
DOOR_BASIC = base64.b64encode(f"{DOOR_USER}:{DOOR_PASSWORD}".encode()).decode()
DOOR_CODE = "97531864*20#"
WEB_TOKEN = "web-Ht4mY7-never-log-me"
WEB_PASSWORD = "operator-Lw2sN6-never-log-me"
SECRETS = (AMI_SECRET, DOOR_PASSWORD, DOOR_BASIC, DOOR_CODE, WEB_TOKEN, WEB_PASSWORD)


def _texts(value: Any, depth: int = 0) -> Iterator[str]:
    """Every string a log field could print: str, repr, and what it holds."""
    if depth > 4:
        return
    for show in (str, repr):
        try:
            yield show(value)
        except Exception:
            continue
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _texts(k, depth + 1)
            yield from _texts(v, depth + 1)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _texts(item, depth + 1)
    elif hasattr(value, "getTraceback"):
        yield value.getTraceback()


class SecretsCase(SynchronousTestCase):
    """A global log observer for the whole test, checked at the end."""

    def setUp(self) -> None:
        self.events: list[dict[str, Any]] = []
        observer: ILogObserver = self.events.append  # type: ignore[assignment]
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def assertNothingLeaked(self) -> None:
        self.assertTrue(self.events, "nothing was logged at all")
        for event in self.events:
            texts = [formatEvent(event), eventAsJSON(event)]
            for key, value in event.items():
                texts.append(key)
                texts.extend(_texts(value))
            for text in texts:
                for secret in SECRETS:
                    self.assertNotIn(
                        secret, text, f"{secret!r} in {event.get('log_format')!r}"
                    )


class AMIAnswers:
    """The manager's side of a FakeEndpoint connection, answering by hand."""

    def __init__(self, endpoint: FakeEndpoint) -> None:
        self.protocol, self.transport = endpoint.accept()
        self.protocol.dataReceived(BANNER)

    def last(self) -> dict[str, str]:
        return dict(parse_messages(self.transport.value())[-1])

    def respond(self, response: str, message: str) -> None:
        action_id = self.last()["ActionID"]
        self.protocol.dataReceived(
            f"Response: {response}\r\nActionID: {action_id}\r\n"
            f"Message: {message}\r\n\r\n".encode()
        )


@implementer(IDTMFPlayer)
class DialerAsPlayer:
    """The AMI dialer as the door's DTMF player, nothing added."""

    def __init__(self, dialer: AMIDialer) -> None:
        self.play_dtmf = dialer.play_dtmf


class AMITests(SecretsCase):
    """The AMI secret, through a refused login, a retry and a good one."""

    def test_login_and_door_code(self) -> None:
        """Login refused, retried, accepted; the door code played over AMI."""
        clock = Clock()
        endpoint = FakeEndpoint()
        settings = recorded_settings(secret=Secret(AMI_SECRET))
        dialer = AMIDialer(settings, endpoint, clock, jitter=lambda: 0.0)
        dialer.startService()
        self.addCleanup(dialer.stopService)
        first = AMIAnswers(endpoint)
        self.assertEqual(first.last()["Secret"], AMI_SECRET)  # it was used
        first.respond("Error", "Authentication failed")
        clock.advance(settings.backoff_max + 1)
        second = AMIAnswers(endpoint)
        self.assertEqual(second.last()["Secret"], AMI_SECRET)
        second.respond("Success", "Authentication accepted")
        self.assertTrue(dialer.connected)
        repr(settings), str(settings)  # a settings object may be logged whole
        # Through a stand-in that only declares IDTMFPlayer, so this test does
        # not depend on the wiring DTMFDoorWiringTests checks.
        opener = DTMFDoorOpener(DialerAsPlayer(dialer), DOOR_CODE, clock=clock)
        opened = opener.open(CALL, "101", DoorContext("north", "PJSIP/gate-0001"))
        played = ""
        while not opened.called:
            action = second.last()
            self.assertEqual(action["Action"], "PlayDTMF")
            played += action["Digit"]
            second.respond("Success", "DTMF successfully queued")
        self.assertEqual(played, DOOR_CODE.upper())
        self.assertTrue(self.successResultOf(opened).opened)
        failed = opener.open(CALL, "101", DoorContext("north", "PJSIP/gate-0001"))
        second.respond("Error", f"Channel not found for {DOOR_CODE[:1]}")
        self.assertFalse(self.successResultOf(failed).opened)
        self.assertNothingLeaked()


@implementer(IAgent)
class Relay:
    """A door relay: answers each request with the next status code."""

    def __init__(self, codes: list[int]) -> None:
        self.codes = codes
        self.authorizations: list[str] = []

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Headers | None = None,
        bodyProducer: Any = None,  # noqa: N803 - IAgent's own name
    ) -> Deferred[Any]:
        assert headers is not None
        self.authorizations += [
            v.decode() for v in headers.getRawHeaders(b"authorization", [])
        ]
        return succeed(_Response(self.codes.pop(0) if self.codes else 500))


class _Response:
    def __init__(self, code: int) -> None:
        self.code = code

    def deliverBody(self, protocol: Any) -> None:
        protocol.dataReceived(f"relay says {self.code} to {DOOR_USER}".encode())
        protocol.connectionLost(Failure(ResponseDone()))


class DoorAndVisitTests(SecretsCase):
    """A whole visit whose door is an HTTP relay with basic auth."""

    def visit(self, relay: Relay) -> Rig:
        rig = Rig(Path(self.mktemp() + "-residents.csv"))
        door = HTTPDoorOpener(
            relay,
            "http://relay.local/open?door={apartment}",
            clock=rig.clock,
            username=DOOR_USER,
            password=DOOR_PASSWORD,
            retry_delay=0.1,
        )
        rig.services = evolve(rig.services, door=door)
        rig.conversations.services = rig.services
        visitor = rig.to_resident()
        rig.dialer.answer("1011")
        resident = rig.connect("127.0.0.1:2")
        rig.run(2.5)
        resident.press("1")
        rig.run(3)
        visitor.close()
        rig.run(1)
        return rig

    def test_visit_with_retry(self) -> None:
        """The relay fails once (5xx), then opens: the password is in no log line."""
        relay = Relay([503, 200])
        rig = self.visit(relay)
        self.assertEqual(relay.authorizations, [f"Basic {DOOR_BASIC}"] * 2)
        self.assertEqual(rig.log.records[0].door_result, "opened")
        self.assertNothingLeaked()

    def test_visit_refused_by_relay(self) -> None:
        """The relay refuses the credentials (401): logged, without them."""
        relay = Relay([401])
        rig = self.visit(relay)
        self.assertEqual(relay.authorizations, [f"Basic {DOOR_BASIC}"])
        self.assertEqual(rig.log.records[0].door_result, "failed")
        self.assertNothingLeaked()


class WebLoginTests(SecretsCase):
    """The web service's token and passwords, right and wrong."""

    def test_logins(self) -> None:
        """Good and bad tokens and passwords are logged by user and client only."""
        clock = Clock()
        auth = Authenticator(
            WEB_TOKEN,
            {"operator": hash_password(WEB_PASSWORD)},
            clock,
            failure_delay=0.5,
            run_blocking=lambda f: maybeDeferred(f),
        )
        tries = [
            ("", "", WEB_TOKEN, True),
            ("", "", WEB_TOKEN[::-1], False),
            ("operator", WEB_PASSWORD, "", True),
            ("operator", WEB_PASSWORD[:-1], "", False),
            ("nobody", WEB_PASSWORD, "", False),
        ]
        for user, password, token, ok in tries:
            d = auth.login(user, password, token, "127.0.0.1")
            clock.advance(1)
            self.assertEqual(self.successResultOf(d) is not None, ok)
        self.assertNothingLeaked()


class DTMFDoorWiringTests(SynchronousTestCase):
    """
    The door code's own path, as the service builds it.  Both failed when
    these tests were written (the config check refused ``mode = dtmf`` even
    with ``[ami]``, and AMIDialer did not provide IDTMFPlayer); c0b0a1e
    fixed both.
    """

    def test_config_accepts_dtmf_door_with_ami(self) -> None:
        """[door] mode = dtmf with an [ami] secret is a valid configuration."""
        config = parse_config(
            f"[ami]\nsecret = {AMI_SECRET}\n[door]\nmode = dtmf\ndigits = 1234\n"
        )
        self.assertEqual(dict(config.door)["mode"], "dtmf")

    def test_ami_dialer_plays_the_door_code(self) -> None:
        """The service hands the AMIDialer to the dtmf opener: it must be accepted."""
        dialer = AMIDialer(
            recorded_settings(secret=Secret(AMI_SECRET)), FakeEndpoint(), Clock()
        )
        opener = door_opener_from_section(
            {"mode": "dtmf", "digits": DOOR_CODE}, reactor=Clock(), dtmf_player=dialer
        )
        self.assertIsInstance(opener, DTMFDoorOpener)
