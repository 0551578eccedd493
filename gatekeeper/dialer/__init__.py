"""
Ringing residents through Asterisk's manager interface (AMI).

:class:`IDialer` is what the visit flow uses; :class:`AMIDialer` provides it
over one AMI connection kept up with backoff; :mod:`.ami` is the AMI client.
"""

from .ami import AMIError, LoginRefused
from .dialer import AMIDialer
from .interfaces import (
    DialerUnavailable,
    IDialer,
    OriginateResult,
    Outcome,
    VisitorChannel,
)
from .settings import AMISettings, AMISettingsError, Secret

__all__ = [
    "AMIDialer",
    "AMIError",
    "AMISettings",
    "AMISettingsError",
    "DialerUnavailable",
    "IDialer",
    "LoginRefused",
    "OriginateResult",
    "Outcome",
    "Secret",
    "VisitorChannel",
]
