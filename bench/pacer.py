"""
Outbound pacing on the real reactor: how late do frames leave?

For each N, opens N TCP connections from this process (the server side, one
core) to a drain process on the other core that reads and discards, attaches
N legs to one :class:`~gatekeeper.media.pacer.Pacer`, and has every leg play
a prompt in a loop, exactly as the visit flow does.  Frames go out through
the same path the protocol uses (``gatekeeper.fastpath``'s direct writer, the
lean epoll loop).  After a warm-up it prints the pacer's own lateness figures
(p50/p99/max, from its histogram's bucket bounds), frames skipped, and CPU
time per frame sent.

    python -m bench.pacer [--legs 100 500 1000 1250 2000] [--seconds 10]

Goal (issue 4): p99 lateness <= 5 ms at 1,250 legs on one core.  Run it on an
otherwise idle machine: pinning needs two free cores.
"""

from __future__ import annotations

import argparse
import os
import resource
import selectors
import socket
import subprocess
import sys
import time

from twisted.internet import epollreactor

epollreactor.install()

from twisted.internet import reactor  # noqa: E402
from twisted.internet.defer import Deferred, DeferredList  # noqa: E402
from twisted.internet.protocol import ClientFactory, Protocol  # noqa: E402
from zope.interface import implementer  # noqa: E402

from gatekeeper.audiosocket.interfaces import IAudioSocketLeg  # noqa: E402
from gatekeeper.audiosocket.wire import Kind, encode_audio  # noqa: E402
from gatekeeper.config import Config  # noqa: E402
from gatekeeper.fastpath import direct_writer, install_fast_poll  # noqa: E402
from gatekeeper.media.pacer import Pacer, PlaybackInterrupted  # noqa: E402
from gatekeeper.media.prompts import PromptLibrary  # noqa: E402
from gatekeeper.service import make_pacer  # noqa: E402


def drain(port_file: str) -> None:
    """The other end: accept everything, read and discard, until stdin closes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    listener.setblocking(False)
    with open(port_file, "w") as f:
        f.write(str(listener.getsockname()[1]))
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    sel.register(sys.stdin, selectors.EVENT_READ)
    while True:
        for key, _ in sel.select():
            if key.fileobj is listener:
                try:
                    conn, _ = listener.accept()
                except BlockingIOError:
                    continue
                conn.setblocking(False)
                sel.register(conn, selectors.EVENT_READ)
            elif key.fileobj is sys.stdin:
                return
            else:
                sock = key.fileobj
                try:
                    if not sock.recv(1 << 16):  # type: ignore[union-attr]
                        sel.unregister(sock)
                        sock.close()  # type: ignore[union-attr]
                except (BlockingIOError, ConnectionError):
                    pass


@implementer(IAudioSocketLeg)
class Leg(Protocol):
    call_uuid = "bench"
    peer = "drain"
    connected = False

    def connectionMade(self) -> None:
        self.connected = True
        self.transport.setTcpNoDelay(True)  # type: ignore[attr-defined]
        self._write = direct_writer(self.transport)
        self.factory.ready(self)  # type: ignore[attr-defined]

    def send_audio(self, kind: Kind, payload: bytes) -> bool:
        return self.send_frame(encode_audio(kind, payload))

    def send_frame(self, frame: bytes) -> bool:
        self._write(frame)
        return True

    def hang_up(self) -> None:
        self.transport.loseConnection()


class LegFactory(ClientFactory):
    protocol = Leg
    noisy = False

    def __init__(self, want: int) -> None:
        self.legs: list[Leg] = []
        self.want = want
        self.all_ready: Deferred[None] = Deferred()

    def ready(self, leg: Leg) -> None:
        self.legs.append(leg)
        if len(self.legs) == self.want:
            self.all_ready.callback(None)


def loop_prompt(stream, pcm: bytes) -> None:  # type: ignore[no-untyped-def]
    stream.play(pcm).addCallbacks(
        lambda _: loop_prompt(stream, pcm),
        lambda f: f.trap(PlaybackInterrupted, Exception) and None,
    )


async def measure(
    pacer: Pacer, port: int, legs: int, seconds: float, pcm: bytes
) -> dict[str, float]:
    factory = LegFactory(legs)
    for i in range(legs):
        reactor.connectTCP("127.0.0.1", port, factory)
        if i % 200 == 199:
            await _sleep(0.02)
    await factory.all_ready
    streams = [pacer.attach(leg, Kind.SLIN) for leg in factory.legs]
    for stream in streams:
        loop_prompt(stream, pcm)
    await _sleep(1.0)  # warm-up
    pacer.lateness.reset()
    sent0, skipped0 = pacer.frames_sent, pacer.frames_skipped
    cpu0 = time.process_time()
    await _sleep(seconds)
    cpu = time.process_time() - cpu0
    sent = pacer.frames_sent - sent0
    result = {
        "legs": legs,
        "frames": sent,
        "expected": legs * 50 * seconds,
        "p50_ms": pacer.lateness.quantile(0.5) * 1000,
        "p99_ms": pacer.lateness.quantile(0.99) * 1000,
        "max_ms": pacer.lateness.max * 1000,
        "skipped": pacer.frames_skipped - skipped0,
        "cpu_pct": 100 * cpu / seconds,
        "us_per_frame": 1e6 * cpu / max(sent, 1),
    }
    for stream in streams:
        pacer.detach(stream)
    for leg in factory.legs:
        leg.transport.loseConnection()
    await _sleep(0.5)
    return result


def _sleep(seconds: float) -> Deferred[None]:
    d: Deferred[None] = Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


async def main_async(args: argparse.Namespace, port: int) -> None:
    pacer = make_pacer(Config(), reactor)  # the server's defaults
    pcm = PromptLibrary.load().pcm("greeting", 8000)
    print(
        f"{'legs':>6} {'frames/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} "
        f"{'skipped':>8} {'CPU %':>6} {'µs/frame':>9}"
    )
    for legs in args.legs:
        r = await measure(pacer, port, legs, args.seconds, pcm)
        print(
            f"{legs:>6} {r['frames'] / args.seconds:>9,.0f} {r['p50_ms']:>7.2f} "
            f"{r['p99_ms']:>7.2f} {r['max_ms']:>7.2f} {r['skipped']:>8.0f} "
            f"{r['cpu_pct']:>6.1f} {r['us_per_frame']:>9.1f}",
            flush=True,
        )
    await DeferredList([])


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--legs", type=int, nargs="+", default=[100, 500, 1000, 1250, 2000]
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--drain", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drain:
        drain(args.drain)
        return
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() >= 2:  # type: ignore[operator]
        os.sched_setaffinity(0, {0})
        print("pacer pinned to CPU 0, drain to CPU 1")
    port_file = f"/tmp/gk-bench-drain-{os.getpid()}"
    child = subprocess.Popen(
        [
            "taskset",
            "-c",
            "1",
            sys.executable,
            "-m",
            "bench.pacer",
            "--drain",
            port_file,
        ],
        stdin=subprocess.PIPE,
    )
    try:
        while not (text := _read(port_file)):
            time.sleep(0.05)
        port = int(text)
        install_fast_poll(reactor)
        done = Deferred.fromCoroutine(main_async(args, port))
        done.addErrback(lambda f: print(f.getTraceback()))
        done.addBoth(lambda _: reactor.stop())
        reactor.run()
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(5)
        os.unlink(port_file)


if __name__ == "__main__":
    main()
