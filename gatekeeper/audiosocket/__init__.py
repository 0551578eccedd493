"""AudioSocket: the wire format and the Twisted protocol that speaks it."""
