"""gatekeeper: a virtual doorman for residential buildings, on Twisted."""

__version__ = "0.1.0"
