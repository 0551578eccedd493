"""
The AMI client against byte-exact sessions recorded from a real Asterisk.

Each replay feeds ``NAME.rx.bin`` into an :class:`AMIProtocol` (in the
recorded ``recv()`` chunks, and in random chunks) while the test calls the
client's API wherever the recorded client sent something; the bytes our
client writes must equal ``NAME.tx.bin`` exactly, since the ActionIDs are
injected from the recording.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from attrs import frozen
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from gatekeeper.dialer.ami import (
    AMIConnectionLost,
    AMIError,
    AMIProtocol,
    AMITimeout,
    LoginRefused,
    Message,
    NoSuchChannel,
    OriginateRefused,
    OriginateResponse,
    Reply,
    encode_action,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "ami"

HYPOTHESIS = settings(
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
    max_examples=30,
)

_STEP = re.compile(
    r"^@\s+[\d.]+ ms\s+(?:(<<|>>) (rx|tx)\[(\d+):(\d+)\](?: chunk (\d+))?|== (.*))$"
)


@frozen
class Step:
    """One line of a transcript: bytes received or sent, or a close."""

    kind: str  # "rx", "tx" or "eof"
    start: int = 0
    end: int = 0
    chunk: int = 0


@cache
def fixture(name: str) -> tuple[bytes, bytes, tuple[Step, ...]]:
    """The rx bytes, tx bytes and the order of events of one recording."""
    rx = (FIXTURES / f"{name}.rx.bin").read_bytes()
    tx = (FIXTURES / f"{name}.tx.bin").read_bytes()
    steps = []
    for line in (FIXTURES / f"{name}.txt").read_text().splitlines():
        m = _STEP.match(line)
        if m is None:
            continue
        if m.group(6) is not None:
            if m.group(6).startswith("EOF"):
                steps.append(Step("eof"))
            continue
        steps.append(
            Step(m.group(2), int(m.group(3)), int(m.group(4)), int(m.group(5) or 0))
        )
    return rx, tx, tuple(steps)


def parse_messages(data: bytes) -> list[list[tuple[str, str]]]:
    """A simple independent parse of AMI bytes (banner excluded)."""
    messages = []
    for block in data.split(b"\r\n\r\n"):
        lines = block.decode().split("\r\n")
        headers = [tuple(line.split(": ", 1)) for line in lines if ": " in line]
        if headers:
            messages.append(headers)
    return messages


def recorded_action_ids(tx: bytes) -> Callable[[str], str]:
    """An ActionID source that hands out the recorded ids, in order, checking
    that each goes to the action the recorded client sent."""
    expected = iter(
        (dict(m)["Action"], dict(m)["ActionID"]) for m in parse_messages(tx)
    )

    def next_id(action: str) -> str:
        recorded_action, action_id = next(expected)
        if recorded_action != action:
            raise AssertionError(f"sent {action}, the recording sent {recorded_action}")
        return action_id

    return next_id


Action = Callable[[AMIProtocol], Any] | None


def replay(
    name: str,
    protocol: AMIProtocol,
    transport: StringTransport,
    actions: Sequence[Action],
    cuts: Iterable[int] | None = None,
) -> list[Any]:
    """
    Drive ``protocol`` through recording ``name``: feed what Asterisk sent,
    run ``actions[i]`` where the recorded client sent its i-th message (None:
    the client sends it by itself), and check each write against the
    recording byte for byte.  ``cuts`` are extra chunk boundaries (offsets
    into rx); without them the recorded chunks are used.
    """
    rx, tx, steps = fixture(name)
    cut_set = None if cuts is None else set(cuts)
    pending_actions = iter(actions)
    results: list[Any] = []
    i = 0
    while i < len(steps):
        step = steps[i]
        if step.kind == "rx":
            j = i
            while j + 1 < len(steps) and steps[j + 1].kind == "rx":
                j += 1
            run = steps[i : j + 1]
            if cut_set is None:
                bounds = [
                    s.end for k, s in enumerate(run[:-1]) if run[k + 1].chunk != s.chunk
                ]
            else:
                bounds = sorted(c for c in cut_set if run[0].start < c < run[-1].end)
            start = run[0].start
            for bound in [*bounds, run[-1].end]:
                protocol.dataReceived(rx[start:bound])
                start = bound
            i = j + 1
            continue
        if step.kind == "tx":
            action = next(pending_actions)
            if action is not None:
                results.append(action(protocol))
            written = transport.value()
            transport.clear()
            if written != tx[step.start : step.end]:
                raise AssertionError(
                    f"{name}: wrote {written!r}, recorded {tx[step.start : step.end]!r}"
                )
        elif step.kind == "eof":
            protocol.connectionLost(Failure(ConnectionDone("Asterisk closed")))
        i += 1
    leftover = list(pending_actions)
    if leftover:
        raise AssertionError(f"{name}: {len(leftover)} actions never ran")
    return results


def tx_headers(name: str, index: int) -> list[tuple[str, str]]:
    """The headers of the recorded client's ``index``-th message, without
    Action and ActionID."""
    message = parse_messages(fixture(name)[1])[index]
    return [(k, v) for k, v in message if k not in ("Action", "ActionID")]


def originate_as_recorded(name: str, index: int) -> Callable[[AMIProtocol], Any]:
    """An action that calls ``originate()`` with the recorded message's values."""
    headers = tx_headers(name, index)
    one = dict(headers)

    def act(p: AMIProtocol) -> Deferred[OriginateResponse]:
        return p.originate(
            one["Channel"],
            one["Context"],
            one["Exten"],
            int(one["Priority"]),
            channel_id=one.get("ChannelId"),
            variables=[
                tuple(v.split("=", 1))  # type: ignore[misc]
                for k, v in headers
                if k == "Variable"
            ],
            timeout_ms=int(one["Timeout"]),
            caller_id=one.get("CallerID"),
        )

    return act


def login(p: AMIProtocol) -> Deferred[Message]:
    return p.login("gktest", "gktest-secret")


def logoff(p: AMIProtocol) -> Deferred[Reply]:
    return p.logoff()


def connect(
    name: str, clock: Clock | None = None
) -> tuple[AMIProtocol, StringTransport, list[Message]]:
    protocol = AMIProtocol(clock or Clock(), recorded_action_ids(fixture(name)[1]))
    transport = StringTransport()
    protocol.makeConnection(transport)
    events: list[Message] = []
    protocol.subscribe(events.append)
    return protocol, transport, events


@frozen
class Scenario:
    name: str
    actions: Sequence[Action]
    check: Callable[[list[Any], list[Message]], None]


class RecordedSessionTests(SynchronousTestCase):
    """Every recorded AMI session, replayed in recorded and random chunks."""

    def run_scenario(self, scenario: Scenario, cuts: Iterable[int] | None) -> None:
        protocol, transport, events = connect(scenario.name)
        results = replay(scenario.name, protocol, transport, scenario.actions, cuts)
        scenario.check(results, events)
        self.assertEqual(protocol._pending, {})
        self.assertEqual(protocol._originates, {})

    # -- scenarios ------------------------------------------------------------

    def login_ok(self) -> Scenario:
        def check(results: list[Any], events: list[Message]) -> None:
            accepted = self.successResultOf(results[0])
            self.assertEqual(accepted.get("Message"), "Authentication accepted")
            self.assertEqual(
                [e.event for e in events], ["FullyBooted", "SuccessfulAuth"]
            )
            self.assertEqual(events[1].get("accountid"), "gktest")
            self.assertEqual(events[1].get("Privilege"), "security,all")
            goodbye = self.successResultOf(results[1])
            self.assertEqual(goodbye.response.response, "Goodbye")

        return Scenario("login-ok", [login, logoff], check)

    def login_bad_secret(self) -> Scenario:
        def check(results: list[Any], events: list[Message]) -> None:
            failure = self.failureResultOf(results[0], LoginRefused)
            self.assertIn("Authentication failed", str(failure.value))
            self.assertIn("gktest", str(failure.value))
            self.assertNotIn("wrong-secret", str(failure.value))
            self.assertEqual(events, [])

        return Scenario(
            "login-bad-secret", [lambda p: p.login("gktest", "wrong-secret")], check
        )

    def _one_originate(
        self,
        name: str,
        success: bool,
        reason: int,
        channel: str,
        hangup_causes: dict[str, str],
    ) -> Scenario:
        channel_id = dict(tx_headers(name, 1))["ChannelId"]

        def check(results: list[Any], events: list[Message]) -> None:
            self.successResultOf(results[0])
            outcome = self.successResultOf(results[1])
            self.assertEqual(
                (outcome.success, outcome.reason, outcome.channel, outcome.uniqueid),
                (success, reason, channel, channel_id),
            )
            self.assertEqual(outcome.event.action_id, "orig-1")
            hangups = {
                e.get("Uniqueid"): e.get("Cause")
                for e in events
                if e.event == "Hangup" and e.get("Linkedid") == channel_id
            }
            self.assertEqual(
                hangups, {channel_id + k: v for k, v in hangup_causes.items()}
            )
            self.assertEqual(
                self.successResultOf(results[2]).response.response, "Goodbye"
            )

        return Scenario(name, [login, originate_as_recorded(name, 1), logoff], check)

    def originate_answered(self) -> Scenario:
        return self._one_originate(
            "originate-answered",
            True,
            4,
            "Local/101@gk-phones-00000000;1",
            {"": "0", ";2": "0"},
        )

    def originate_answered_audio(self) -> Scenario:
        return self._one_originate(
            "originate-answered-audio",
            True,
            4,
            "Local/101@gk-phones-00000001;1",
            {"": "16", ";2": "16"},
        )

    def originate_audiosocket_refused(self) -> Scenario:
        return self._one_originate(
            "originate-audiosocket-refused",
            True,
            4,
            "Local/101@gk-phones-00000002;1",
            {"": "0", ";2": "0"},
        )

    def originate_no_answer(self) -> Scenario:
        return self._one_originate(
            "originate-no-answer",
            False,
            3,
            "Local/102@gk-phones/n",
            {"": "19", ";2": "19"},
        )

    def originate_busy(self) -> Scenario:
        return self._one_originate(
            "originate-busy", False, 5, "Local/103@gk-phones/n", {"": "0", ";2": "17"}
        )

    def originate_congestion(self) -> Scenario:
        return self._one_originate(
            "originate-congestion",
            False,
            8,
            "Local/104@gk-phones/n",
            {"": "0", ";2": "34"},
        )

    def originate_bad_channel(self) -> Scenario:
        name = "originate-bad-channel"

        def check(results: list[Any], events: list[Message]) -> None:
            got = [self.successResultOf(d) for d in results[1:5]]
            self.assertEqual(
                [(o.success, o.reason, o.channel, o.uniqueid) for o in got],
                [
                    (
                        False,
                        0,
                        "Local/999@nonexistent-context/n",
                        "d1d1d1d1-0000-4000-8000-000000000001",
                    ),
                    (False, 0, "Local/999@nonexistent-context/n", None),
                    (False, 0, "Bogus/xyz", "d1d1d1d1-0000-4000-8000-000000000002"),
                    (False, 0, "Bogus/xyz", None),
                ],
            )
            self.assertEqual(got[1].event.get("Uniqueid"), "<unknown>")

        return Scenario(
            name,
            [login, *(originate_as_recorded(name, i) for i in range(1, 5)), logoff],
            check,
        )

    def originate_sync_errors(self) -> Scenario:
        name = "originate-sync-errors"

        def raw(index: int) -> Action:
            return lambda p: p.send_action(
                "Originate", tx_headers(name, index), action_id_last=True
            )

        def check(results: list[Any], events: list[Message]) -> None:
            messages = []
            for d in (results[1], results[3], results[5]):
                failure = self.failureResultOf(d, OriginateRefused)
                messages.append(failure.value.response.get("Message"))
            self.assertEqual(
                messages,
                [
                    "Extension does not exist.",
                    "Invalid channel",
                    "Uniqueid length exceeds maximum of 149\n",
                ],
            )
            for d, text in (
                (results[2], "Channel not specified"),
                (results[4], "Invalid timeout"),
            ):
                reply = self.successResultOf(d)
                self.assertEqual(
                    (reply.response.response, reply.response.get("Message")),
                    ("Error", text),
                )

        return Scenario(
            name,
            [
                login,
                originate_as_recorded(name, 1),
                raw(2),
                originate_as_recorded(name, 3),
                raw(4),
                originate_as_recorded(name, 5),
                logoff,
            ],
            check,
        )

    def hangup_by_channelid(self) -> Scenario:
        name = "hangup-by-channelid"
        channel_id = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9"

        def check(results: list[Any], events: list[Message]) -> None:
            self.assertTrue(self.successResultOf(results[1]).success)
            hung = self.successResultOf(results[2])
            self.assertEqual(hung.get("Message"), "Channel Hungup")
            failure = self.failureResultOf(results[3], NoSuchChannel)
            self.assertIn("No such channel", str(failure.value))
            hangups = [e.get("Uniqueid") for e in events if e.event == "Hangup"]
            self.assertEqual(hangups, [channel_id, channel_id + ";2"])

        return Scenario(
            name,
            [
                login,
                originate_as_recorded(name, 1),
                lambda p: p.hangup(channel_id),
                lambda p: p.hangup(channel_id),
                logoff,
            ],
            check,
        )

    def playdtmf(self) -> Scenario:
        name = "playdtmf"
        channel_id = "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a"

        def check(results: list[Any], events: list[Message]) -> None:
            for d in results[2:5]:
                self.assertEqual(
                    self.successResultOf(d).get("Message"), "DTMF successfully queued"
                )
            self.assertEqual(
                self.successResultOf(results[5]).get("Message"), "Channel Hungup"
            )

        return Scenario(
            name,
            [
                login,
                originate_as_recorded(name, 1),
                lambda p: p.play_dtmf(channel_id, "5"),
                lambda p: p.play_dtmf("Local/105@gk-phones-00000009;2", "5"),
                lambda p: p.play_dtmf(channel_id, "5", receive=True),
                lambda p: p.hangup(channel_id),
                logoff,
            ],
            check,
        )

    def interleave(self) -> Scenario:
        name = "interleave"
        order: list[str] = []

        def tracked(index: int, label: str) -> Action:
            def act(p: AMIProtocol) -> Deferred[OriginateResponse]:
                d = originate_as_recorded(name, index)(p)
                d.addCallback(lambda r: order.append(label) or r)
                return d

            return act

        def check(results: list[Any], events: list[Message]) -> None:
            a = self.successResultOf(results[1])
            b = self.successResultOf(results[2])
            self.assertEqual(order, ["b", "a"])
            self.assertEqual(
                (a.reason, a.uniqueid, a.channel),
                (
                    4,
                    "a1a1a1a1-1111-4111-8111-111111111111",
                    "Local/101@gk-phones-0000000a;1",
                ),
            )
            self.assertEqual(
                (b.reason, b.uniqueid, b.channel),
                (
                    4,
                    "b2b2b2b2-2222-4222-8222-222222222222",
                    "Local/101@gk-phones-0000000b;1",
                ),
            )

        return Scenario(name, [login, tracked(1, "a"), tracked(2, "b"), logoff], check)

    def getvar_setvar(self) -> Scenario:
        name = "getvar-setvar"
        cid = "4b3a2918-0706-4504-8302-0102030405a6"

        def check(results: list[Any], events: list[Message]) -> None:
            values = [self.successResultOf(results[i]) for i in (2, 3, 4, 6, 7, 9, 10)]
            self.assertEqual(
                values,
                [
                    "e69439e9-1489-4bba-b55d-37612b5dffaf",
                    "127.0.0.1:9092",
                    "e69439e9-1489-4bba-b55d-37612b5dffaf",
                    "opened",
                    "Up",
                    "e69439e9-1489-4bba-b55d-37612b5dffaf",
                    "",
                ],
            )
            self.assertEqual(
                self.successResultOf(results[5]).get("Message"), "Variable Set"
            )
            self.failureResultOf(results[8], NoSuchChannel)
            varsets = [
                e.get("Value")
                for e in events
                if e.event == "VarSet" and e.get("Variable") == "GK_RESULT"
            ]
            self.assertEqual(varsets, ["opened"])

        return Scenario(
            name,
            [
                login,
                originate_as_recorded(name, 1),
                lambda p: p.getvar(cid, "GK_UUID"),
                lambda p: p.getvar(cid, "GK_TARGET"),
                lambda p: p.getvar("Local/105@gk-phones-0000000c;2", "GK_UUID"),
                lambda p: p.setvar(cid, "GK_RESULT", "opened"),
                lambda p: p.getvar(cid, "GK_RESULT"),
                lambda p: p.getvar(cid, "CHANNEL(state)"),
                lambda p: p.getvar("Local/nonexistent-00000000;1", "GK_UUID"),
                lambda p: p.getvar(None, "ASUUID"),
                lambda p: p.getvar(cid, "GK_NOT_SET"),
                lambda p: p.hangup(cid),
                logoff,
            ],
            check,
        )

    def userevent_gatekeepervisit(self) -> Scenario:
        def check(results: list[Any], events: list[Message]) -> None:
            visits = [
                e
                for e in events
                if e.event == "UserEvent" and e.get("UserEvent") == "GatekeeperVisit"
            ]
            self.assertEqual(len(visits), 1)
            self.assertEqual(
                (
                    visits[0].get("Uuid"),
                    visits[0].get("Gate"),
                    visits[0].get("Channel"),
                ),
                (
                    "4e2c2745-f164-4065-9f6c-45a6bec01115",
                    "main",
                    "Local/visit@gk-e2e-gate-00000000;2",
                ),
            )
            self.assertEqual(visits[0].get("AccountCode"), "")

        return Scenario("userevent-gatekeepervisit", [login], check)

    def all_scenarios(self) -> list[Scenario]:
        return [
            self.login_ok(),
            self.login_bad_secret(),
            self.originate_answered(),
            self.originate_answered_audio(),
            self.originate_audiosocket_refused(),
            self.originate_no_answer(),
            self.originate_busy(),
            self.originate_congestion(),
            self.originate_bad_channel(),
            self.originate_sync_errors(),
            self.hangup_by_channelid(),
            self.playdtmf(),
            self.interleave(),
            self.getvar_setvar(),
            self.userevent_gatekeepervisit(),
        ]

    # -- tests ----------------------------------------------------------------

    def test_every_fixture_has_a_scenario(self) -> None:
        """No recorded session is left out of the replays."""
        recorded = {p.name[: -len(".rx.bin")] for p in FIXTURES.glob("*.rx.bin")}
        self.assertEqual(recorded, {s.name for s in self.all_scenarios()})

    def test_login_ok(self) -> None:
        """A good login is accepted; the events after it reach subscribers."""
        self.run_scenario(self.login_ok(), None)

    def test_login_bad_secret(self) -> None:
        """A refused login fails with LoginRefused naming the user, not the
        secret."""
        self.run_scenario(self.login_bad_secret(), None)

    def test_originate_answered(self) -> None:
        """An answered Originate fires with Reason 4 and the real channel."""
        self.run_scenario(self.originate_answered(), None)

    def test_originate_answered_audio(self) -> None:
        """The same call ending with the resident's hang-up (cause 16)."""
        self.run_scenario(self.originate_answered_audio(), None)

    def test_originate_audiosocket_refused(self) -> None:
        """A refused AudioSocket still reports Reason 4, then Hangups."""
        self.run_scenario(self.originate_audiosocket_refused(), None)

    def test_originate_no_answer(self) -> None:
        """No answer is Reason 3 with the requested dial string."""
        self.run_scenario(self.originate_no_answer(), None)

    def test_originate_busy(self) -> None:
        """Busy is Reason 5 even though a Hangup came before it."""
        self.run_scenario(self.originate_busy(), None)

    def test_originate_congestion(self) -> None:
        """Congestion is Reason 8."""
        self.run_scenario(self.originate_congestion(), None)

    def test_originate_bad_channel(self) -> None:
        """Failures carry the ChannelId when sent, and None for <unknown>."""
        self.run_scenario(self.originate_bad_channel(), None)

    def test_originate_sync_errors(self) -> None:
        """Response: Error fails originate() with Asterisk's message."""
        self.run_scenario(self.originate_sync_errors(), None)

    def test_hangup_by_channelid(self) -> None:
        """Hangup by ChannelId works once, then is NoSuchChannel."""
        self.run_scenario(self.hangup_by_channelid(), None)

    def test_playdtmf(self) -> None:
        """PlayDTMF to either half, and with Receive, is acknowledged."""
        self.run_scenario(self.playdtmf(), None)

    def test_interleave(self) -> None:
        """Two Originates in flight are told apart by ActionID."""
        self.run_scenario(self.interleave(), None)

    def test_getvar_setvar(self) -> None:
        """Getvar values (empty when unset), Setvar, globals, a gone channel."""
        self.run_scenario(self.getvar_setvar(), None)

    def test_userevent_gatekeepervisit(self) -> None:
        """The GatekeeperVisit user event arrives with Uuid, Gate, Channel."""
        self.run_scenario(self.userevent_gatekeepervisit(), None)

    def test_one_byte_chunks(self) -> None:
        """Every recording survives being delivered one byte at a time."""
        for scenario in self.all_scenarios():
            rx = fixture(scenario.name)[0]
            self.run_scenario(scenario, range(1, len(rx)))

    @HYPOTHESIS
    @given(st.data())
    def test_random_chunks(self, data: st.DataObject) -> None:
        """Every recording gives the same results in any chunking."""
        scenarios = self.all_scenarios()
        scenario = data.draw(st.sampled_from(scenarios), label="scenario")
        rx = fixture(scenario.name)[0]
        cuts = data.draw(
            st.lists(st.integers(1, len(rx) - 1), max_size=80), label="cuts"
        )
        self.run_scenario(scenario, cuts)


class ParsingTests(SynchronousTestCase):
    """What the parser accepts, and what makes it hang up."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.protocol = AMIProtocol(self.clock, action_timeout=5.0)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        self.events: list[Message] = []
        self.protocol.subscribe(self.events.append)

    def feed(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def assertClosedWithLog(self, data: bytes, words: str) -> None:
        with capturedLogs() as logs:
            self.feed(data)
        self.assertTrue(self.transport.disconnecting)
        text = " ".join(formatEvent(e) for e in logs)
        self.assertIn(words, text)
        self.assertIn("closing the connection", text)

    def test_banner_not_ami(self) -> None:
        """A first line that is not an AMI banner closes the connection."""
        self.assertClosedWithLog(b"HTTP/1.1 400 Bad Request\r\n", "not an AMI banner")

    def test_line_without_colon(self) -> None:
        """A line that is not 'Key: value' closes the connection."""
        self.assertClosedWithLog(
            b"Asterisk Call Manager/13.0.0\r\nEvent: X\r\ngarbage\r\n",
            "not 'Key: value'",
        )

    def test_line_too_long(self) -> None:
        """A line beyond MAX_LENGTH closes the connection, even unfinished."""
        self.assertClosedWithLog(
            b"Asterisk Call Manager/13.0.0\r\nEvent: " + b"x" * 9000, "longer than"
        )

    def test_too_many_headers(self) -> None:
        """A message with more headers than MAX_HEADERS closes the connection."""
        many = b"".join(b"K%d: v\r\n" % i for i in range(AMIProtocol.MAX_HEADERS + 1))
        self.assertClosedWithLog(
            b"Asterisk Call Manager/13.0.0\r\nEvent: X\r\n" + many, "headers"
        )

    def test_message_too_big(self) -> None:
        """A message over MAX_MESSAGE_BYTES closes the connection."""
        self.protocol.MAX_HEADERS = 10**6
        line = b"Key: " + b"v" * 8000 + b"\r\n"
        self.assertClosedWithLog(
            b"Asterisk Call Manager/13.0.0\r\nEvent: X\r\n" + line * 40, "bytes"
        )

    def test_nothing_after_garbage(self) -> None:
        """Lines after the bad one in the same chunk are not dispatched."""
        self.feed(b"Asterisk Call Manager/13.0.0\r\nbad\r\n\r\nEvent: A\r\n\r\n")
        self.assertEqual(self.events, [])

    def test_headers_kept_in_order_with_repeats(self) -> None:
        """Repeated keys are all kept, in wire order; empty values stay empty."""
        self.feed(
            b"Asterisk Call Manager/13.0.0\r\n"
            b"Event: VarSet\r\nVariable: A\r\nVariable: B\r\nValue: \r\n"
            b"Odd:novalue-space\r\n\r\n"
        )
        [event] = self.events
        self.assertEqual(
            event.headers,
            (
                ("Event", "VarSet"),
                ("Variable", "A"),
                ("Variable", "B"),
                ("Value", ""),
                ("Odd", "novalue-space"),
            ),
        )
        self.assertEqual(event.get_all("variable"), ["A", "B"])
        self.assertEqual(event.get("VALUE"), "")
        self.assertIn("Value", event)
        self.assertNotIn("Missing", event)

    def test_stray_blank_lines_ignored(self) -> None:
        """Blank lines between messages are harmless."""
        self.feed(b"Asterisk Call Manager/13.0.0\r\n\r\n\r\nEvent: A\r\n\r\n\r\n")
        self.assertEqual([e.event for e in self.events], ["A"])
        self.assertFalse(self.transport.disconnecting)

    def test_unknown_action_id_response_ignored(self) -> None:
        """A response to an ActionID we never sent is logged and dropped."""
        with capturedLogs() as logs:
            self.feed(
                b"Asterisk Call Manager/13.0.0\r\n"
                b"Response: Success\r\nActionID: nope\r\n\r\n"
            )
        self.assertIn("unknown ActionID nope", " ".join(formatEvent(e) for e in logs))
        self.assertFalse(self.transport.disconnecting)

    def test_event_list(self) -> None:
        """A response with EventList: start fires only once the list is
        complete, with the list's events."""
        self.feed(b"Asterisk Call Manager/13.0.0\r\n")
        d = self.protocol.send_action("CoreShowChannels")
        action_id = parse_messages(self.transport.value())[0][1][1]
        aid = action_id.encode()
        self.feed(
            b"Response: Success\r\nActionID: " + aid + b"\r\nEventList: start\r\n"
            b"Message: Channels will follow\r\n\r\n"
            b"Event: CoreShowChannel\r\nActionID: " + aid + b"\r\nChannel: A\r\n\r\n"
            b"Event: Hangup\r\nUniqueid: 1\r\n\r\n"
            b"Event: CoreShowChannel\r\nActionID: " + aid + b"\r\nChannel: B\r\n\r\n"
        )
        self.assertNoResult(d)
        self.feed(
            b"Event: CoreShowChannelsComplete\r\nActionID: "
            + aid
            + b"\r\nEventList: Complete\r\nListItems: 2\r\n\r\n"
        )
        reply = self.successResultOf(d)
        self.assertEqual(reply.response.get("Message"), "Channels will follow")
        self.assertEqual([e.get("Channel") for e in reply.events], ["A", "B"])
        self.assertEqual(
            [e.event for e in self.events],
            [
                "CoreShowChannel",
                "Hangup",
                "CoreShowChannel",
                "CoreShowChannelsComplete",
            ],
        )

    def test_action_timeout(self) -> None:
        """An action Asterisk never answers fails with AMITimeout."""
        self.feed(b"Asterisk Call Manager/13.0.0\r\n")
        d = self.protocol.hangup("x")
        self.clock.advance(4.9)
        self.assertNoResult(d)
        self.clock.advance(0.2)
        self.failureResultOf(d, AMITimeout)
        self.assertEqual(self.protocol._pending, {})

    def test_connection_lost_fails_everything(self) -> None:
        """Pending actions and originates fail with AMIConnectionLost."""
        self.feed(b"Asterisk Call Manager/13.0.0\r\n")
        a = self.protocol.getvar("c", "V")
        b = self.protocol.originate("PJSIP/1", "ctx", "s")
        lost = self.protocol.when_lost()
        self.protocol.connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(a, AMIConnectionLost)
        self.failureResultOf(b, AMIConnectionLost)
        self.successResultOf(lost)
        self.failureResultOf(self.protocol.hangup("c"), AMIConnectionLost)

    def test_banner_lost(self) -> None:
        """Waiting for a banner that never comes fails when the connection
        closes."""
        d = self.protocol.when_banner()
        self.protocol.connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(d, AMIConnectionLost)

    def test_originate_response_before_ack(self) -> None:
        """An OriginateResponse that overtakes its ack is still delivered."""
        self.feed(b"Asterisk Call Manager/13.0.0\r\n")
        d = self.protocol.originate("PJSIP/1", "ctx", "s", channel_id="cid")
        aid = dict(parse_messages(self.transport.value())[0])["ActionID"].encode()
        self.feed(
            b"Event: OriginateResponse\r\nActionID: " + aid + b"\r\nResponse: Success"
            b"\r\nChannel: PJSIP/1-0001\r\nReason: 4\r\nUniqueid: cid\r\n\r\n"
        )
        self.assertEqual(self.successResultOf(d).reason, 4)
        self.feed(b"Response: Success\r\nActionID: " + aid + b"\r\n\r\n")
        self.assertEqual(self.protocol._pending, {})

    def test_header_injection_refused(self) -> None:
        """Values with CR or LF are refused before anything is written."""
        self.feed(b"Asterisk Call Manager/13.0.0\r\n")
        d = self.protocol.hangup("x\r\nAction: Originate")
        self.failureResultOf(d, ValueError)
        d = self.protocol.originate("PJSIP/1", "c", "s", variables=[("A", "b\nc")])
        self.failureResultOf(d, ValueError)
        self.assertEqual(self.transport.value(), b"")
        with self.assertRaises(ValueError):
            encode_action([("Bad: key", "v")])

    def test_bad_dtmf_digit(self) -> None:
        """Only one of 0-9 * # A-D is sent as a DTMF digit."""
        self.feed(b"Asterisk Call Manager/13.0.0\r\n")
        for digit in ("", "12", "x"):
            self.failureResultOf(self.protocol.play_dtmf("c", digit), ValueError)
        self.assertEqual(self.transport.value(), b"")

    def test_subscriber_error_does_not_break_session(self) -> None:
        """A subscriber that raises is logged; others still get the event."""
        seen: list[str | None] = []

        def broken(m: Message) -> None:
            raise RuntimeError("oops")

        self.protocol.subscribe(broken, "A")
        unsubscribe = self.protocol.subscribe(lambda m: seen.append(m.event), "A")
        with capturedLogs() as logs:
            self.feed(b"Asterisk Call Manager/13.0.0\r\nEvent: A\r\n\r\n")
        self.assertEqual(seen, ["A"])
        self.assertTrue(any(e.get("log_failure") for e in logs))
        unsubscribe()
        self.feed(b"Event: A\r\n\r\n")
        self.assertEqual(seen, ["A"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)

    def test_errors_are_amierrors(self) -> None:
        """The client's failures share AMIError, so callers can catch one."""
        for cls in (
            LoginRefused,
            NoSuchChannel,
            OriginateRefused,
            AMIConnectionLost,
            AMITimeout,
        ):
            self.assertTrue(issubclass(cls, AMIError))


class SecretTests(SynchronousTestCase):
    """The manager secret never reaches a log line, at any level."""

    def assertSecretNotLogged(self, name: str, secret: str) -> None:
        protocol, transport, _ = connect(name)
        actions: list[Action] = [lambda p: p.login("gktest", secret)]
        if name == "login-ok":
            actions.append(logoff)
        with capturedLogs() as logs:
            results = replay(name, protocol, transport, actions)
        for d in results:
            d.addErrback(lambda f: f.trap(LoginRefused))
        self.assertTrue(logs)
        if name == "login-ok":
            # Debug events are captured too: the Logoff action is one.
            self.assertIn(LogLevel.debug, {e["log_level"] for e in logs})
        for event in logs:
            self.assertNotIn(secret, formatEvent(event))
            self.assertNotIn(secret, repr(event))

    def test_good_login(self) -> None:
        """A successful login logs nothing of the secret."""
        self.assertSecretNotLogged("login-ok", "gktest-secret")

    def test_refused_login(self) -> None:
        """A refused login logs nothing of the secret."""
        self.assertSecretNotLogged("login-bad-secret", "wrong-secret")

    def test_redacted(self) -> None:
        """Message.redacted hides Secret headers."""
        m = Message((("Action", "Login"), ("Secret", "s3")))
        self.assertEqual(m.redacted(), [("Action", "Login"), ("Secret", "********")])
