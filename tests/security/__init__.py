"""
Security tests: who may connect, who may decide, what stays bounded, what
is never logged (issue 8, part 3).

Rig-based tests (``support.py`` over ``tests/flow/rig.py``) run on a Clock;
the listener tests use real sockets on 127.0.0.x only, and the slow-loris
test a gatekeeper started in a child process (``serve.py``), so that its
memory is measured apart from the 10,000 sockets that attack it.
"""
