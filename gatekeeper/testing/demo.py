"""
``gatekeeper-sim demo``: one visit from the gate to the door, no PBX needed.

Starts gatekeeper in this process (``makeService``, the real pt-BR prompts, a
small residents file, SQLite and recordings in a temporary folder, AMI
pointing at the simulated Asterisk) and the simulated Asterisk, all on
127.0.0.1 with free ports, then runs one visit: a visitor at the gate
dials apartment 101 and says their name; the resident's phone rings,
answers, hears who it is and presses 1; the door opens.  While it runs it
prints what each side hears and does, what gatekeeper decides, and at the
end the visit's row in the access log.

Prompts are recognised by their exact samples (``SoundSpotter``); the
visitor's "name" is a tone tagged with their number, so the resident's line
shows whose voice they heard.
"""

from __future__ import annotations

import argparse
import configparser
import datetime
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater, react
from twisted.logger import LogLevel, formatEvent, globalLogBeginner

from gatekeeper.media.prompts import DEFAULT_PROMPT_DIRECTORY, PROMPT_TEXT_FILE
from gatekeeper.testing.audio import BEEP
from gatekeeper.testing.harness import RESIDENTS, start_building
from gatekeeper.testing.pbx import TimelineEntry
from gatekeeper.testing.script import Phone, Press, Speak, Visitor, WaitFor

__all__ = ["main"]

_DECISIONS = {"allow": "1", "deny": "2"}

# What gatekeeper logs that tells the story (the rest is for operators).
_STORY = ("call {call_uuid}: {phase}", "visit recorded as", "door {status}", "apartment {apartment}", "recorded the visitor's name", "ringing {extension}", "resident {extension} for")  # fmt: skip


def prompt_texts(directory: Path = DEFAULT_PROMPT_DIRECTORY) -> dict[str, str]:
    """What each prompt says, from the ``prompts.ini`` it was made from."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(directory / PROMPT_TEXT_FILE, encoding="utf-8")
    return dict(parser["prompts"]) if parser.has_section("prompts") else {}


class _Printer:
    """Prints timeline lines as they happen, relative to the start."""

    def __init__(self, started: float, out: Any) -> None:
        self.started = started
        self.out = out
        self.texts = prompt_texts()

    def line(self, entry: TimelineEntry) -> None:
        at, who, what = entry
        if what.startswith("hears name:"):
            what = f"hears the voice of visitor #{what.split(':', 1)[1]}"
        elif what.startswith("hears "):
            text = self.texts.get(what[6:])
            if text:
                what = f'{what}: "{text}"'
        print(
            f"{at - self.started:7.2f} s  {who:<15} {what}", file=self.out, flush=True
        )

    def log_event(self, event: dict[str, Any]) -> None:
        text = event.get("log_format") or ""
        level = event.get("log_level")
        if level is not None and level >= LogLevel.error:
            print(f"        gatekeeper ERROR: {formatEvent(event)}", file=sys.stderr)
            return
        if "call_uuid" not in event or not any(s in text for s in _STORY):
            return
        message = formatEvent(event).split(": ", 1)[-1]
        if "phase" in event:
            message = f"phase -> {event['phase']}"
        self.line((event["log_time"], "gatekeeper", message))


async def demo(reactor: Any, options: argparse.Namespace) -> int:
    out = sys.stdout
    base = Path(options.keep or tempfile.mkdtemp(prefix="gatekeeper-demo-"))
    digit = _DECISIONS[options.decision]
    phones = {
        "1011": Phone(
            answer_after=options.ring,
            steps=(WaitFor("resident_choice", after=1.0), Press(digit)),
        )
    }
    visitor = Visitor(
        (
            WaitFor("ask_apartment", after=1.5),
            Press(options.apartment + "#", gap=0.3),
            WaitFor(BEEP, after=0.4),
            Speak(1.2),
        ),
        number=7,
    )
    print(
        "gatekeeper demo: gatekeeper and a simulated Asterisk on 127.0.0.1.\n"
        f"Working folder: {base}\n"
        "Residents:\n  " + "\n  ".join(RESIDENTS.splitlines()) + "\n"
        f"The visitor dials {options.apartment}; the resident's phone (1011) answers "
        f"after {options.ring:g} s and presses {digit}.\n"
        "Prompts play at real speed: the visit takes about half a minute.\n",
        file=out,
        flush=True,
    )
    building = await start_building(
        base,
        reactor,
        phones=phones,
        prompts=DEFAULT_PROMPT_DIRECTORY,
        door={"mode": "command", "command": "true"},
        recording={"directory": base / "rec"},
        login_delay=1.0,
    )
    pbx = building.pbx
    printer = _Printer(pbx.started, out)
    for entry in pbx.timeline:
        printer.line(entry)
    pbx.listener = printer.line
    globalLogBeginner.beginLoggingTo([printer.log_event], redirectStandardIO=False)
    try:
        channel = pbx.visit(visitor)
        await channel.when_gone()
        for _ in range(100):
            if len(building.registry) == 0:
                break
            await deferLater(reactor, 0.05, lambda: None)
        record = await building.record(channel.call_uuid)
    finally:
        pbx.listener = None
        await building.stop()
    print("", file=out)
    if record is None:
        print("No visit record was written.", file=out)
        return 1
    started = record.phases["started"]
    phases = ", ".join(
        f"{name} +{at - started:.1f} s"
        for name, at in sorted(record.phases.items(), key=lambda i: i[1])
    )
    when = datetime.datetime.fromtimestamp(started).isoformat(timespec="seconds")
    print(
        "The access log's row for this visit:\n"
        f"  call_uuid         {record.call_uuid}\n"
        f"  started           {when}\n"
        f"  outcome           {record.outcome}\n"
        f"  gate              {record.gate}\n"
        f"  apartment         {record.apartment}\n"
        f"  extensions_tried  {', '.join(record.extensions_tried)}\n"
        f"  door              {record.door_result} ({record.door_detail})\n"
        f"  recording         {record.recording_path}\n"
        f"  phases            {phases}",
        file=out,
    )
    if not options.keep:
        shutil.rmtree(base, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> None:
    """The ``gatekeeper-sim`` command."""
    parser = argparse.ArgumentParser(
        prog="gatekeeper-sim", description="gatekeeper against a simulated Asterisk"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("demo", help="run one visit from the gate to the door")
    run.add_argument("--apartment", default="101", help="what the visitor dials")
    run.add_argument("--decision", choices=sorted(_DECISIONS), default="allow")
    run.add_argument(
        "--ring", type=float, default=2.0, help="seconds before the resident answers"
    )
    run.add_argument(
        "--keep", metavar="DIR", help="keep the database and recordings in DIR"
    )
    options = parser.parse_args(argv)

    def go(reactor: Any) -> Deferred[None]:
        d = Deferred.fromCoroutine(demo(reactor, options))

        def done(code: int) -> None:
            if code:
                raise SystemExit(code)

        return d.addCallback(done)

    react(go)


if __name__ == "__main__":
    main()
