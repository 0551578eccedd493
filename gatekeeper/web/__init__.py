"""
The operations web service: health, Prometheus metrics, live calls, visit
history and recordings, and the operator page that shows them.

Visit history and recordings are personal data, so everything but
``/healthz`` sits behind :mod:`gatekeeper.web.auth`; the service refuses to
start without a credential.  Build it with
:func:`gatekeeper.web.service.make_web_service`.

This package's ``__init__`` imports nothing, so :mod:`gatekeeper.config` can
import :mod:`gatekeeper.web.settings` without pulling in twisted.web.
"""
