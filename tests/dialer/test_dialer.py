"""
AMIDialer: ringing residents, the visitor map, and staying connected.

Calls are replayed against the recorded AMI sessions (the dialer's writes
must equal the recording byte for byte); reconnection runs on a fake endpoint
and a ``task.Clock``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import (
    ConnectionDone,
    ConnectionLost,
    ConnectionRefusedError,
)
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from gatekeeper.dialer import (
    AMIDialer,
    AMISettings,
    DialerUnavailable,
    IDialer,
    Outcome,
    Secret,
    VisitorChannel,
)
from gatekeeper.dialer.ami import AMIProtocol
from gatekeeper.session.uuids import InvalidCallUUID
from tests.dialer.test_ami import (
    Action,
    fixture,
    parse_messages,
    recorded_action_ids,
    replay,
)

UUID = "e69439e9-1489-4bba-b55d-37612b5dffaf"
UUID_B = "0c7d3f8e-2a6b-4c19-9e5d-8f1a2b3c4d5e"
VISIT_UUID = "4e2c2745-f164-4065-9f6c-45a6bec01115"
BANNER = b"Asterisk Call Manager/13.0.0\r\n"


@implementer(IStreamClientEndpoint)
class FakeEndpoint:
    """An endpoint whose connection attempts the test answers by hand."""

    def __init__(self) -> None:
        self.attempts: list[tuple[Factory, Deferred[Any]]] = []

    def connect(self, factory: Factory) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.attempts.append((factory, d))
        return d

    def accept(self) -> tuple[AMIProtocol, StringTransport]:
        factory, d = self.attempts[-1]
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        d.callback(protocol)
        return protocol, transport

    def refuse(self) -> None:
        self.attempts[-1][1].errback(ConnectionRefusedError())


def recorded_settings(**overrides: Any) -> AMISettings:
    """Settings that make the dialer send what the recorded client sent."""
    values: dict[str, Any] = {
        "secret": Secret("gktest-secret"),
        "username": "gktest",
        "channel_template": "Local/{extension}@gk-phones/n",
        "resident_context": "gk-resident",
        "target": "127.0.0.1:9092",
        "caller_id": '"Portaria" <100>',
        "backoff_initial": 1.0,
        "backoff_factor": 2.0,
        "backoff_max": 8.0,
    }
    values.update(overrides)
    return AMISettings(**values)


def recorded_channel_id(name: str, index: int = 1) -> str:
    return dict(parse_messages(fixture(name)[1])[index])["ChannelId"]


class DialerCase(SynchronousTestCase):
    def make(
        self,
        settings: AMISettings | None = None,
        action_ids: Callable[[str], str] | None = None,
        channel_ids: Sequence[str] | None = None,
    ) -> AMIDialer:
        self.clock = Clock()
        self.endpoint = FakeEndpoint()
        ids = iter(channel_ids) if channel_ids is not None else None
        self.dialer = AMIDialer(
            settings or recorded_settings(),
            self.endpoint,
            self.clock,
            action_ids=action_ids,
            channel_ids=(lambda _: next(ids)) if ids is not None else None,
            jitter=lambda: 0.0,
        )
        return self.dialer

    def replay(
        self,
        name: str,
        actions: Sequence[Action],
        settings: AMISettings | None = None,
        channel_ids: Sequence[str] | None = None,
    ) -> list[Any]:
        """Start a dialer and run recording ``name`` through it; the first
        recorded write is the dialer's own Login."""
        dialer = self.make(settings, recorded_action_ids(fixture(name)[1]), channel_ids)
        dialer.startService()
        protocol, transport = self.endpoint.accept()
        self.protocol, self.transport = protocol, transport
        return replay(name, protocol, transport, [None, *actions])

    def connect(self, dialer: AMIDialer) -> tuple[AMIProtocol, StringTransport]:
        """Accept the pending connection attempt and log in."""
        protocol, transport = self.endpoint.accept()
        protocol.dataReceived(BANNER)
        [login] = parse_messages(transport.value())
        transport.clear()
        action_id = dict(login)["ActionID"].encode()
        protocol.dataReceived(
            b"Response: Success\r\nActionID: " + action_id + b"\r\n"
            b"Message: Authentication accepted\r\n\r\n"
        )
        self.assertTrue(dialer.connected)
        return protocol, transport

    def respond(self, response: str = "Success", **headers: str) -> None:
        """Answer the last action written with ``Response: response``."""
        sent = parse_messages(self.transport.value())[-1]
        lines = [f"Response: {response}", f"ActionID: {dict(sent)['ActionID']}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.protocol.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode())

    def connected_dialer(self, **overrides: Any) -> AMIDialer:
        dialer = self.make(recorded_settings(**overrides))
        dialer.startService()
        self.protocol, self.transport = self.connect(dialer)
        return dialer


class CallResidentReplayTests(DialerCase):
    """call_resident() against each recorded Originate."""

    def ring(self, extension: str = "101", timeout: float = 15.0) -> Action:
        return lambda p: self.dialer.call_resident(UUID, extension, timeout)

    def test_answered(self) -> None:
        """Reason 4 is ANSWERED with the real channel; its Hangup is seen."""
        cid = recorded_channel_id("originate-answered")
        results = self.replay(
            "originate-answered", [self.ring(), lambda p: p.logoff()], channel_ids=[cid]
        )
        result = self.successResultOf(results[0])
        self.assertEqual(
            (result.outcome, result.answered, result.reason, result.channel),
            (Outcome.ANSWERED, True, 4, "Local/101@gk-phones-00000000;1"),
        )
        self.assertEqual((result.uniqueid, result.channel_id), (cid, cid))
        self.assertEqual((result.call_uuid, result.extension), (UUID, "101"))
        self.assertEqual(
            self.successResultOf(self.dialer.when_resident_gone(cid)), None
        )

    def test_answered_then_resident_hangs_up(self) -> None:
        """when_resident_gone fires with the resident's hang-up cause."""
        cid = recorded_channel_id("originate-answered-audio")
        gone: list[Deferred[int | None]] = []

        def ring_and_watch(p: AMIProtocol) -> Deferred[Any]:
            d = self.dialer.call_resident(UUID, "101", 15.0)
            gone.append(self.dialer.when_resident_gone(cid))
            return d

        results = self.replay(
            "originate-answered-audio",
            [ring_and_watch, lambda p: p.logoff()],
            channel_ids=[cid],
        )
        self.assertEqual(self.successResultOf(results[0]).outcome, Outcome.ANSWERED)
        self.assertEqual(self.successResultOf(gone[0]), 16)

    def test_audiosocket_refused(self) -> None:
        """Answered, then gone at once with cause 0: the flow must watch the
        Hangup, not only the outcome."""
        cid = recorded_channel_id("originate-audiosocket-refused")
        gone: list[Deferred[int | None]] = []

        def ring(p: AMIProtocol) -> Deferred[Any]:
            d = self.dialer.call_resident(UUID, "101", 15.0)
            d.addCallback(
                lambda r: gone.append(self.dialer.when_resident_gone(cid)) or r
            )
            return d

        results = self.replay(
            "originate-audiosocket-refused",
            [ring, lambda p: p.logoff()],
            settings=recorded_settings(target="127.0.0.1:9099"),
            channel_ids=[cid],
        )
        self.assertEqual(self.successResultOf(results[0]).outcome, Outcome.ANSWERED)
        self.assertEqual(self.successResultOf(gone[0]), 0)

    def assertOutcome(
        self, name: str, extension: str, timeout: float, outcome: Outcome, reason: int
    ) -> None:
        cid = recorded_channel_id(name)
        results = self.replay(
            name,
            [self.ring(extension, timeout), lambda p: p.logoff()],
            channel_ids=[cid],
        )
        result = self.successResultOf(results[0])
        self.assertEqual(
            (result.outcome, result.reason, result.uniqueid, result.answered),
            (outcome, reason, cid, False),
        )
        self.assertEqual(result.channel, f"Local/{extension}@gk-phones/n")

    def test_no_answer(self) -> None:
        """Reason 3 is NO_ANSWER; ring_timeout becomes Timeout in ms."""
        self.assertOutcome("originate-no-answer", "102", 3.0, Outcome.NO_ANSWER, 3)

    def test_busy(self) -> None:
        """Reason 5 is BUSY."""
        self.assertOutcome("originate-busy", "103", 15.0, Outcome.BUSY, 5)

    def test_congestion(self) -> None:
        """Reason 8 is CONGESTION."""
        self.assertOutcome("originate-congestion", "104", 15.0, Outcome.CONGESTION, 8)

    def test_unreachable(self) -> None:
        """Reason 0 is UNREACHABLE, and the failure still names our
        ChannelId."""
        name = "originate-bad-channel"
        headers = [dict(m) for m in parse_messages(fixture(name)[1])]

        def raw(i: int) -> Action:
            one = headers[i]
            return lambda p: p.originate(
                one["Channel"],
                "gk-resident",
                "s",
                channel_id=one.get("ChannelId"),
                variables=[("GK_UUID", UUID), ("GK_TARGET", "127.0.0.1:9092")],
                timeout_ms=15000,
                caller_id='"Portaria" <100>',
            )

        results = self.replay(
            name,
            [
                lambda p: self.dialer.call_resident(
                    UUID, "999@nonexistent-context", 15
                ),
                raw(2),
                raw(3),
                raw(4),
                lambda p: p.logoff(),
            ],
            settings=recorded_settings(channel_template="Local/{extension}/n"),
            channel_ids=[headers[1]["ChannelId"]],
        )
        result = self.successResultOf(results[0])
        self.assertEqual(
            (result.outcome, result.reason, result.uniqueid),
            (Outcome.UNREACHABLE, 0, headers[1]["ChannelId"]),
        )

    def test_refused_at_once(self) -> None:
        """A sync error (Response: Error) is FAILED with Asterisk's message."""
        name = "originate-sync-errors"

        def raw(i: int) -> Action:
            headers = parse_messages(fixture(name)[1])[i]
            rest = [(k, v) for k, v in headers if k not in ("Action", "ActionID")]
            return lambda p: p.send_action("Originate", rest, action_id_last=True)

        results = self.replay(
            name,
            [self.ring(), raw(2), raw(3), raw(4), raw(5), lambda p: p.logoff()],
            settings=recorded_settings(resident_context="gk-nonexistent"),
            channel_ids=[recorded_channel_id(name)],
        )
        result = self.successResultOf(results[0])
        self.assertEqual(
            (result.outcome, result.message, result.reason),
            (Outcome.FAILED, "Extension does not exist.", None),
        )

    def test_interleaved_calls(self) -> None:
        """Two residents rung at once each get their own outcome and hangup."""
        name = "interleave"
        cids = [recorded_channel_id(name, 1), recorded_channel_id(name, 2)]
        gone: list[Deferred[int | None]] = []

        def ring(uuid: str, cid: str) -> Action:
            def act(p: AMIProtocol) -> Deferred[Any]:
                d = self.dialer.call_resident(uuid, "101", 15.0)
                gone.append(self.dialer.when_resident_gone(cid))
                return d

            return act

        results = self.replay(
            name,
            [ring(UUID, cids[0]), ring(UUID_B, cids[1]), lambda p: p.logoff()],
            channel_ids=cids,
        )
        a, b = (self.successResultOf(d) for d in results[:2])
        self.assertEqual((a.call_uuid, a.uniqueid), (UUID, cids[0]))
        self.assertEqual((b.call_uuid, b.uniqueid), (UUID_B, cids[1]))
        self.assertEqual(
            (a.channel, b.channel),
            ("Local/101@gk-phones-0000000a;1", "Local/101@gk-phones-0000000b;1"),
        )
        self.assertEqual([self.successResultOf(d) for d in gone], [16, 16])

    def test_hang_up_resident(self) -> None:
        """hang_up_resident hangs up by ChannelId; a gone channel is no error."""
        name = "hangup-by-channelid"
        cid = recorded_channel_id(name)
        results = self.replay(
            name,
            [
                self.ring("105"),
                lambda p: self.dialer.hang_up_resident(UUID),
                lambda p: self.dialer.hang_up(cid),
                lambda p: p.logoff(),
            ],
            channel_ids=[cid],
        )
        self.assertEqual(self.successResultOf(results[1]), 1)
        self.assertIs(self.successResultOf(results[2]), False)
        # Its Hangup event arrived: nothing is left to hang up for the call.
        self.assertEqual(self.successResultOf(self.dialer.hang_up_resident(UUID)), 0)

    def test_play_dtmf(self) -> None:
        """play_dtmf sends one PlayDTMF per digit to the named channel."""
        name = "playdtmf"
        cid = recorded_channel_id(name)
        results = self.replay(
            name,
            [
                self.ring("105"),
                lambda p: self.dialer.play_dtmf(cid, "5"),
                lambda p: self.dialer.play_dtmf("Local/105@gk-phones-00000009;2", "5"),
                lambda p: p.play_dtmf(cid, "5", receive=True),
                lambda p: self.dialer.hang_up_resident(UUID),
                lambda p: p.logoff(),
            ],
            channel_ids=[cid],
        )
        self.assertIsNone(self.successResultOf(results[1]))
        self.assertIsNone(self.successResultOf(results[2]))

    def test_set_done(self) -> None:
        """set_done sends the recorded Setvar shape with GK_DONE=1."""
        dialer = self.connected_dialer()
        d = dialer.set_done("PJSIP/gate-00000001")
        [sent] = parse_messages(self.transport.value())
        recorded = next(
            m
            for m in parse_messages(fixture("getvar-setvar")[1])
            if dict(m)["Action"] == "Setvar"
        )
        self.assertEqual([k for k, _ in sent], [k for k, _ in recorded])
        self.assertEqual(
            dict(sent) | {"ActionID": "x"},
            {
                "Action": "Setvar",
                "ActionID": "x",
                "Channel": "PJSIP/gate-00000001",
                "Variable": "GK_DONE",
                "Value": "1",
            },
        )
        self.assertNoResult(d)
        self.respond(Message="Variable Set")
        self.assertIs(self.successResultOf(d), True)

    def test_set_done_gone_channel(self) -> None:
        """set_done on a channel that already hung up is False, not an error."""
        dialer = self.connected_dialer()
        d = dialer.set_done("PJSIP/gate-00000001")
        self.respond("Error", Message="No such channel")
        self.assertIs(self.successResultOf(d), False)


class CallResidentTests(DialerCase):
    """call_resident() beyond the recordings: defaults, cancel, timeouts."""

    def sent(self) -> list[dict[str, str]]:
        return [dict(m) for m in parse_messages(self.transport.value())]

    def test_defaults(self) -> None:
        """The default Originate rings PJSIP/<ext> into s@gatekeeper-resident
        with GK_UUID, GK_TARGET and a ChannelId made from the call UUID."""
        dialer = self.make(AMISettings(secret=Secret("x"), target="10.0.0.5:9092"))
        dialer.startService()
        self.protocol, self.transport = self.connect(dialer)
        dialer.call_resident(UUID.upper(), "101", 20)
        dialer.call_resident(UUID, "101", 20)
        messages = parse_messages(self.transport.value())
        first = messages[0]
        self.assertEqual(
            [(k, v) for k, v in first if k not in ("ChannelId", "ActionID")],
            [
                ("Action", "Originate"),
                ("Channel", "PJSIP/101"),
                ("Context", "gatekeeper-resident"),
                ("Exten", "s"),
                ("Priority", "1"),
                ("Async", "true"),
                ("Variable", f"GK_UUID={UUID}"),
                ("Variable", "GK_TARGET=10.0.0.5:9092"),
                ("Timeout", "20000"),
            ],
        )
        ids = [dict(m)["ChannelId"] for m in messages]
        self.assertTrue(all(i.startswith(UUID) for i in ids))
        self.assertEqual(len(set(ids)), 2)
        self.assertTrue(all(len(i) <= 149 for i in ids))

    def test_bad_arguments(self) -> None:
        """Bad UUIDs, extensions and timeouts are refused before sending."""
        dialer = self.connected_dialer()
        self.failureResultOf(dialer.call_resident("nope", "101", 5), InvalidCallUUID)
        for extension in ("", "1/2", "101&102", "10 1", "1\r\n"):
            self.failureResultOf(dialer.call_resident(UUID, extension, 5), ValueError)
        self.failureResultOf(dialer.call_resident(UUID, "101", 0), ValueError)
        self.assertEqual(self.transport.value(), b"")

    def test_cancel_hangs_up(self) -> None:
        """Cancelling a ringing call hangs up its channel by ChannelId."""
        dialer = self.connected_dialer()
        d = dialer.call_resident(UUID, "101", 20)
        self.respond(Message="Originate successfully queued")
        cid = self.sent()[0]["ChannelId"]
        self.transport.clear()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(
            [(m["Action"], m["Channel"]) for m in self.sent()], [("Hangup", cid)]
        )
        self.respond(Message="Channel Hungup")

    def test_no_originate_response(self) -> None:
        """Asterisk silent past ring timeout + grace: LOST, and hang up."""
        dialer = self.connected_dialer(originate_grace=5.0)
        d = dialer.call_resident(UUID, "101", 20)
        self.respond(Message="Originate successfully queued")
        self.transport.clear()
        self.clock.advance(24.9)
        self.assertNoResult(d)
        self.clock.advance(0.2)
        result = self.successResultOf(d)
        self.assertEqual(result.outcome, Outcome.LOST)
        self.assertIn("in time", result.message)
        self.assertEqual([m["Action"] for m in self.sent()], ["Hangup"])

    def test_connection_lost_while_ringing(self) -> None:
        """AMI dropping while a resident rings gives LOST, not an error."""
        dialer = self.connected_dialer()
        d = dialer.call_resident(UUID, "101", 20)
        self.respond(Message="Originate successfully queued")
        self.protocol.connectionLost(Failure(ConnectionLost()))
        result = self.successResultOf(d)
        self.assertEqual(result.outcome, Outcome.LOST)
        self.assertFalse(dialer.connected)

    def test_unexpected_reason(self) -> None:
        """A Reason we do not map is FAILED, saying which."""
        dialer = self.connected_dialer()
        d = dialer.call_resident(UUID, "101", 20)
        action_id = self.sent()[0]["ActionID"]
        self.respond()
        self.protocol.dataReceived(
            b"Event: OriginateResponse\r\nActionID: "
            + action_id.encode()
            + b"\r\nResponse: Failure\r\nChannel: PJSIP/101\r\nReason: 2\r\n"
            b"Uniqueid: <unknown>\r\n\r\n"
        )
        result = self.successResultOf(d)
        self.assertEqual((result.outcome, result.reason), (Outcome.FAILED, 2))
        self.assertIn("Reason 2", result.message)
        self.assertIsNone(result.uniqueid)

    def test_play_dtmf_digits_in_order(self) -> None:
        """Several digits go one PlayDTMF at a time, each after the last."""
        dialer = self.connected_dialer()
        d = dialer.play_dtmf("PJSIP/gate-1", "1#")
        self.assertEqual([m["Digit"] for m in self.sent()], ["1"])
        self.respond(Message="DTMF successfully queued")
        self.assertNoResult(d)
        self.assertEqual([m["Digit"] for m in self.sent()], ["1", "#"])
        self.respond(Message="DTMF successfully queued")
        self.assertIsNone(self.successResultOf(d))
        self.failureResultOf(dialer.play_dtmf("PJSIP/gate-1", "12x"), ValueError)

    def test_log_lines_carry_call_uuid(self) -> None:
        """Every dialer log event about a call has its call_uuid as a field."""
        dialer = self.connected_dialer()
        with capturedLogs() as logs:
            d = dialer.call_resident(UUID, "101", 20)
            self.respond()
            d.cancel()
            self.failureResultOf(d)
        # The dialer's own events (the AMI protocol's debug lines know
        # actions, not calls).
        about_call = [
            e
            for e in logs
            if UUID in formatEvent(e)
            and e["log_namespace"].startswith("gatekeeper.dialer.dialer")
        ]
        self.assertTrue(about_call)
        for event in about_call:
            self.assertEqual(event.get("call_uuid"), UUID, formatEvent(event))


class UnavailableTests(DialerCase):
    """While AMI is down the dialer says so at once."""

    def test_call_resident_fails_at_once(self) -> None:
        """call_resident fails with DialerUnavailable, logged with the call."""
        dialer = self.make()
        dialer.startService()
        with capturedLogs() as logs:
            d = dialer.call_resident(UUID, "101", 20)
        failure = self.failureResultOf(d, DialerUnavailable)
        self.assertIn("tcp:127.0.0.1:5038", str(failure.value))
        self.assertIn(UUID, [e.get("call_uuid") for e in logs])
        self.assertFalse(dialer.connected)

    def test_other_actions_fail_at_once(self) -> None:
        """Hang-up, DTMF and GK_DONE fail with DialerUnavailable too."""
        dialer = self.make()
        self.failureResultOf(dialer.hang_up("PJSIP/1"), DialerUnavailable)
        self.failureResultOf(dialer.play_dtmf("PJSIP/1", "1"), DialerUnavailable)
        self.failureResultOf(dialer.set_done("PJSIP/1"), DialerUnavailable)

    def test_after_connection_lost(self) -> None:
        """Once the connection drops, call_resident fails at once again."""
        dialer = self.connected_dialer()
        self.protocol.connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(dialer.call_resident(UUID, "101", 20), DialerUnavailable)

    def test_from_settings(self) -> None:
        """from_settings dials the configured endpoint string."""
        reactor = MemoryReactorClock()
        settings = recorded_settings(endpoint="tcp:pbx.example:5039")
        dialer = AMIDialer.from_settings(reactor, settings)
        dialer.startService()
        [(host, port, *_)] = reactor.tcpClients
        self.assertEqual((host, port), ("pbx.example", 5039))
        self.assertFalse(dialer.connected)

    def test_provides_idialer(self) -> None:
        """AMIDialer provides the interface the flow depends on."""
        self.assertTrue(verifyObject(IDialer, self.make()))


class ReconnectTests(DialerCase):
    """One AMI connection kept up, with exponential backoff."""

    def next_delay(self) -> float:
        [call] = self.clock.getDelayedCalls()
        return call.getTime() - self.clock.seconds()

    def test_backoff_on_refused_connections(self) -> None:
        """Refused connections are retried after 1, 2, 4, 8, 8 seconds."""
        dialer = self.make()
        dialer.startService()
        delays = []
        for _ in range(5):
            self.endpoint.refuse()
            delays.append(self.next_delay())
            self.clock.advance(delays[-1])
        self.assertEqual(delays, [1.0, 2.0, 4.0, 8.0, 8.0])
        self.assertEqual(len(self.endpoint.attempts), 6)
        self.assertFalse(dialer.connected)

    def test_jitter_added(self) -> None:
        """The jitter source is added to every delay."""
        dialer = AMIDialer(
            recorded_settings(), FakeEndpoint(), Clock(), jitter=lambda: 0.25
        )
        self.assertEqual([dialer.retry_delay(n) for n in (1, 2, 5)], [1.25, 2.25, 8.25])

    def test_reconnect_after_loss(self) -> None:
        """A lost connection is redialled; reconnects counts the comebacks."""
        dialer = self.make()
        dialer.startService()
        protocol, _ = self.connect(dialer)
        self.assertEqual((dialer.logins, dialer.reconnects), (1, 0))
        protocol.connectionLost(Failure(ConnectionLost()))
        self.assertFalse(dialer.connected)
        self.assertEqual(self.next_delay(), 1.0)
        self.clock.advance(1.0)
        self.assertEqual(len(self.endpoint.attempts), 2)
        self.connect(dialer)
        self.assertEqual((dialer.logins, dialer.reconnects), (2, 1))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_events_after_reconnect(self) -> None:
        """The new connection's events reach the dialer, not the old one's."""
        dialer = self.make()
        dialer.startService()
        old, _ = self.connect(dialer)
        old.connectionLost(Failure(ConnectionLost()))
        self.clock.advance(1.0)
        new, _ = self.connect(dialer)
        new.dataReceived(
            b"Event: UserEvent\r\nChannel: PJSIP/gate-1\r\n"
            b"UserEvent: GatekeeperVisit\r\nUuid: " + UUID.encode() + b"\r\n\r\n"
        )
        self.assertEqual(dialer.visitor_channel(UUID).channel, "PJSIP/gate-1")

    def test_login_refused_backs_off(self) -> None:
        """A refused login drops the connection and backs off, logging the
        user but never the secret."""
        secret = "s3cr3t-value"
        dialer = self.make(
            recorded_settings(secret=Secret(secret)), lambda a: "login-1"
        )
        dialer.startService()
        rx = fixture("login-bad-secret")[0]
        delays = []
        with capturedLogs() as logs:
            for _ in range(3):
                protocol, transport = self.endpoint.accept()
                protocol.dataReceived(rx)
                self.assertIn(secret.encode(), transport.value())
                self.assertTrue(transport.disconnecting)
                # Asterisk closes its end too; that must not start a 2nd retry.
                protocol.connectionLost(Failure(ConnectionDone()))
                delays.append(self.next_delay())
                self.clock.advance(delays[-1])
        self.assertEqual(delays, [1.0, 2.0, 4.0])
        self.assertFalse(dialer.connected)
        text = [formatEvent(e) for e in logs]
        self.assertTrue(
            any("Authentication failed" in t and "gktest" in t for t in text)
        )
        for event in logs:
            self.assertNotIn(secret, formatEvent(event))
            self.assertNotIn(secret, repr(event))

    def test_no_banner(self) -> None:
        """A peer that never sends the banner is dropped and retried."""
        dialer = self.make()
        dialer.startService()
        _, transport = self.endpoint.accept()
        self.clock.advance(dialer.settings.action_timeout)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.next_delay(), 1.0)
        self.assertEqual(transport.value(), b"")

    def test_stop_logs_off(self) -> None:
        """Stopping sends Logoff, closes, waits for the close, and does not
        reconnect."""
        dialer = self.make()
        dialer.startService()
        protocol, transport = self.connect(dialer)
        d = dialer.stopService()
        self.assertEqual(
            [dict(m)["Action"] for m in parse_messages(transport.value())], ["Logoff"]
        )
        self.assertTrue(transport.disconnecting)
        self.assertNoResult(d)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(d)
        self.assertFalse(dialer.connected)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_while_waiting(self) -> None:
        """Stopping between attempts cancels the pending retry."""
        dialer = self.make()
        dialer.startService()
        self.endpoint.refuse()
        self.successResultOf(dialer.stopService())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_while_connecting(self) -> None:
        """Stopping mid-attempt cancels it and schedules nothing."""
        dialer = self.make()
        dialer.startService()
        self.successResultOf(dialer.stopService())
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(len(self.endpoint.attempts), 1)


class VisitorTests(DialerCase):
    """The GatekeeperVisit announcements."""

    def announce(
        self,
        uuid: str = VISIT_UUID,
        gate: str | None = "main",
        channel: str = "PJSIP/gate-00000001",
        kind: str = "GatekeeperVisit",
    ) -> None:
        lines = [
            "Event: UserEvent",
            "Privilege: user,all",
            f"Channel: {channel}",
            "Uniqueid: 1795567432.1",
            f"UserEvent: {kind}",
            f"Uuid: {uuid}",
        ]
        if gate is not None:
            lines.append(f"Gate: {gate}")
        self.protocol.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode())

    def test_recorded_event(self) -> None:
        """The recorded announcement names the visitor's channel and gate."""
        self.replay("userevent-gatekeepervisit", [])
        self.assertEqual(
            self.dialer.visitor_channel(VISIT_UUID),
            VisitorChannel(
                VISIT_UUID, "Local/visit@gk-e2e-gate-00000000;2", "main", "1795567432.1"
            ),
        )

    def test_wait_for_announcement(self) -> None:
        """when_visitor_announced fires when the event arrives."""
        dialer = self.connected_dialer()
        d = dialer.when_visitor_announced(VISIT_UUID.upper(), timeout=5)
        self.assertNoResult(d)
        self.announce(uuid=VISIT_UUID.upper())
        self.assertEqual(self.successResultOf(d).gate, "main")
        self.assertEqual(self.clock.getDelayedCalls(), [])
        again = dialer.when_visitor_announced(VISIT_UUID)
        self.assertEqual(self.successResultOf(again).call_uuid, VISIT_UUID)

    def test_announcement_never_comes(self) -> None:
        """Without an event the wait ends with None and a log line."""
        dialer = self.connected_dialer()
        d = dialer.when_visitor_announced(VISIT_UUID, timeout=5)
        with capturedLogs() as logs:
            self.clock.advance(5)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual([e.get("call_uuid") for e in logs], [VISIT_UUID])
        self.announce()  # late: remembered, no waiter left to fire
        self.assertIsNotNone(dialer.visitor_channel(VISIT_UUID))

    def test_bad_events_ignored(self) -> None:
        """Bad Uuids are logged and ignored; other user events are ignored."""
        dialer = self.connected_dialer()
        with capturedLogs() as logs:
            self.announce(uuid="{" + VISIT_UUID + "}")
            self.announce(uuid=VISIT_UUID, kind="SomethingElse")
        self.assertIsNone(dialer.visitor_channel(VISIT_UUID))
        self.assertIn("no valid Uuid", " ".join(formatEvent(e) for e in logs))

    def test_missing_gate(self) -> None:
        """An event without Gate still gives the channel; gate is None."""
        dialer = self.connected_dialer()
        self.announce(gate=None)
        self.assertIsNone(dialer.visitor_channel(VISIT_UUID).gate)

    def test_entries_expire(self) -> None:
        """Announcements are forgotten visitor_ttl seconds later."""
        dialer = self.connected_dialer(visitor_ttl=60.0)
        self.announce()
        self.clock.advance(59)
        self.assertIsNotNone(dialer.visitor_channel(VISIT_UUID))
        self.clock.advance(1)
        self.assertIsNone(dialer.visitor_channel(VISIT_UUID))

    def test_bounded(self) -> None:
        """Beyond visitor_max the oldest announcements are dropped."""
        dialer = self.connected_dialer(visitor_max=3)
        uuids = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(5)]
        for u in uuids:
            self.announce(uuid=u)
        self.assertEqual(
            [dialer.visitor_channel(u) is not None for u in uuids],
            [False, False, True, True, True],
        )

    def test_forget(self) -> None:
        """forget() drops the call's announcement and ends its waits."""
        dialer = self.connected_dialer()
        self.announce()
        other = "11111111-1111-4111-8111-111111111111"
        waiting = dialer.when_visitor_announced(other)
        dialer.forget(VISIT_UUID)
        dialer.forget(other)
        self.assertIsNone(dialer.visitor_channel(VISIT_UUID))
        self.assertIsNone(self.successResultOf(waiting))


class VisitorGoneTests(DialerCase):
    """Telling a visitor who hung up from a dropped AudioSocket connection."""

    announce = VisitorTests.announce

    def hangup(self, uniqueid: str) -> None:
        self.protocol.dataReceived(
            (
                "Event: Hangup\r\nPrivilege: call,all\r\n"
                f"Channel: PJSIP/gate-00000001\r\nUniqueid: {uniqueid}\r\n"
                "Cause: 16\r\nCause-txt: Normal Clearing\r\n\r\n"
            ).encode()
        )

    def test_hangup_of_announced_visitor(self) -> None:
        """A Hangup event for the announced visitor's channel fires the watch."""
        dialer = self.connected_dialer()
        self.announce()
        gone = dialer.when_visitor_gone(VISIT_UUID)
        self.assertNoResult(gone)
        self.hangup("1795567432.99")  # someone else's channel
        self.assertNoResult(gone)
        self.hangup("1795567432.1")
        self.assertIs(self.successResultOf(gone), True)

    def test_watch_before_announcement(self) -> None:
        """A watch set before the GatekeeperVisit event starts once it arrives."""
        dialer = self.connected_dialer()
        gone = dialer.when_visitor_gone(VISIT_UUID)
        self.announce()
        self.hangup("1795567432.1")
        self.assertIs(self.successResultOf(gone), True)

    def test_cancel_stops_watching(self) -> None:
        """A cancelled watch leaves nothing behind."""
        dialer = self.connected_dialer()
        self.announce()
        gone = dialer.when_visitor_gone(VISIT_UUID)
        gone.cancel()
        self.failureResultOf(gone)
        self.assertEqual(dialer._visitor_gone, {})
        unannounced = dialer.when_visitor_gone("11111111-2222-4333-8444-555555555555")
        unannounced.cancel()
        self.failureResultOf(unannounced)
        self.assertEqual(dialer._visitor_waiters, {})
