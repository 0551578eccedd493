"""The twistd plugin: a name and a pointer to :mod:`gatekeeper.tap`."""

from twisted.application.service import ServiceMaker

gatekeeper = ServiceMaker(
    "gatekeeper",
    "gatekeeper.tap",
    "gatekeeper, the virtual doorman: an Asterisk AudioSocket server",
    "gatekeeper",
)
