"""
Fuzzing the AudioSocket frame decoder and the protocol with its registry.

:mod:`tests.fuzz.harness` holds the two targets and the invariants they
check on every input; ``corpus/`` is the committed seed corpus (made by
:mod:`tests.fuzz.seeds` from the real Asterisk transcripts plus hand-made
edge cases); :mod:`tests.fuzz.test_fuzz` replays it and a bounded number of
generated inputs in the normal suite; :mod:`tests.fuzz.run` is the long,
coverage-guided run (atheris, ``make fuzz``).
"""
