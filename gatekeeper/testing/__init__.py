"""
A simulated Asterisk for tests, the demo and the load benchmark.

- :mod:`.legs`: AudioSocket client legs that behave as Asterisk does on the wire;
- :mod:`.ami`: the Asterisk Manager Interface, server side;
- :mod:`.pbx`: the PBX behind both, playing the sample dialplan;
- :mod:`.script`: scripted visitors and residents' phones;
- :mod:`.audio`: signature voices and recognising what a leg heard;
- :mod:`.harness`: gatekeeper and the simulated Asterisk on 127.0.0.1;
- :mod:`.demo`: ``gatekeeper-sim demo``.
"""
