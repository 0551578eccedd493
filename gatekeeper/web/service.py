"""
The web service: one twisted.web ``Site`` on its own endpoint.

=====================  =========================================  ======
path                   what                                       auth
=====================  =========================================  ======
``/healthz``           listener, AMI, database: 200 or 503        no
``/login``             the login form; ``POST`` checks it         no
``/logout``            ``POST`` ends the session                  no
``/``                  the operator page (``static/index.html``)  yes
``/static/...``        its CSS and JavaScript                     yes
``/metrics``           Prometheus text format                     yes
``/api/calls``         live call pairs (JSON)                     yes
``/api/visits``        the access log, paginated (JSON)           yes
``/recordings/<uuid>`` a visitor's recorded name (WAV)            yes
=====================  =========================================  ======

"auth" is a bearer token or a login session (:mod:`gatekeeper.web.auth`);
without one, API paths answer 401 in JSON and page paths redirect to the
login form.  Every answer carries headers that keep browsers from caching,
framing or sniffing it, and a content security policy that allows the page's
own files only.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web import static
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from gatekeeper.listening import ListeningService
from gatekeeper.web._json import error, json_body
from gatekeeper.web.api import CallsResource, RecordingsResource, VisitsResource
from gatekeeper.web.auth import Authenticator
from gatekeeper.web.health import HealthResource
from gatekeeper.web.metrics import (
    DoorCounts,
    GatekeeperCollector,
    MetricsResource,
    make_registry,
)
from gatekeeper.web.settings import WebConfig, WebSettingsError

__all__ = [
    "STATIC",
    "LoginResource",
    "LogoutResource",
    "RootResource",
    "WebService",
    "WebSettingsError",
    "make_root",
    "make_web_service",
]

_log = Logger()

STATIC = Path(__file__).parent / "static"

_HEADERS = {
    b"x-content-type-options": b"nosniff",
    b"x-frame-options": b"DENY",
    b"referrer-policy": b"no-referrer",
    b"content-security-policy": (
        b"default-src 'self'; script-src 'self'; style-src 'self'; "
        b"img-src 'self' data:; media-src 'self'; connect-src 'self'; "
        b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
}
_PUBLIC = (b"healthz", b"login", b"logout")
# Paths a person opens in the browser: redirected to the login form.
_PAGES = (b"", b"index.html", b"static")


class _StaticFiles(Resource):
    """Exactly the page's own files: no directory listing, nothing else."""

    def __init__(self, directory: Path, names: tuple[str, ...]) -> None:
        super().__init__()
        for name in names:
            self.putChild(name.encode("ascii"), static.File(str(directory / name)))

    def getChild(self, path: bytes, request: Any) -> Resource:
        return _NotFound()


class _NotFound(Resource):
    isLeaf = True

    def render(self, request: Any) -> bytes:
        return error(request, 404, "not_found", "no such resource")


class _Unauthorized(Resource):
    isLeaf = True

    def __init__(self, page: bool) -> None:
        super().__init__()
        self.page = page

    def render(self, request: Any) -> bytes:
        if self.page and request.method in (b"GET", b"HEAD"):
            request.setResponseCode(303)
            request.setHeader(b"location", b"/login")
            return b""
        request.setHeader(b"www-authenticate", b'Bearer realm="gatekeeper"')
        return error(
            request,
            401,
            "unauthorized",
            "log in at /login, or send Authorization: Bearer <token>",
        )


class LoginResource(Resource):
    """
    ``GET``: the form.  ``POST``: a session cookie, or back to the form.

    The form's own CSS and script are its children (``/login/login.css``),
    public like the form: they hold no data.
    """

    def __init__(self, auth: Authenticator, page: Path) -> None:
        super().__init__()
        self.auth = auth
        self.page = page
        for name in ("login.css", "login.js"):
            self.putChild(name.encode("ascii"), static.File(str(page.parent / name)))

    def getChild(self, path: bytes, request: Any) -> Resource:
        if path == b"":
            return self
        return _NotFound()

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return self.page.read_bytes()

    def render_POST(self, request: Any) -> object:
        def field(name: bytes) -> str:
            values = request.args.get(name) or [b""]
            return values[0].decode("utf-8", "replace")[:1024]

        client = getattr(request.getClientAddress(), "host", "?")
        d = self.auth.login(
            field(b"username").strip(), field(b"password"), field(b"token"), client
        )
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def decided(sid: str | None) -> None:
            if gone:
                return
            if sid is None:
                request.setResponseCode(303)
                request.setHeader(b"location", b"/login?failed=1")
            else:
                self.auth.set_cookie(request, sid)
                request.setResponseCode(303)
                request.setHeader(b"location", b"/")
            request.finish()

        def failed(failure: Any) -> None:
            _log.failure("login check failed", failure)
            if not gone:
                request.write(error(request, 500, "internal", "try again"))
                request.finish()

        d.addCallbacks(decided, failed)
        return NOT_DONE_YET


class LogoutResource(Resource):
    isLeaf = True

    def __init__(self, auth: Authenticator) -> None:
        super().__init__()
        self.auth = auth

    def render_POST(self, request: Any) -> bytes:
        self.auth.logout(request)
        self.auth.set_cookie(request, None)
        request.setResponseCode(303)
        request.setHeader(b"location", b"/login")
        return b""


class _WhoAmI(Resource):
    isLeaf = True

    def __init__(self, auth: Authenticator, live_refresh: float) -> None:
        super().__init__()
        self.auth = auth
        self.live_refresh = live_refresh

    def render_GET(self, request: Any) -> bytes:
        return json_body(
            request,
            {
                "user": self.auth.principal(request),
                "live_refresh": self.live_refresh,
            },
        )


class RootResource(Resource):
    """Sets the safety headers and lets only authenticated requests past."""

    def __init__(self, auth: Authenticator) -> None:
        super().__init__()
        self.auth = auth

    def getChildWithDefault(self, path: bytes, request: Any) -> Resource:
        for name, value in _HEADERS.items():
            request.setHeader(name, value)
        if path not in _PUBLIC:
            request.setHeader(b"cache-control", b"no-store")
            if self.auth.principal(request) is None:
                return _Unauthorized(page=path in _PAGES)
        return super().getChildWithDefault(path, request)

    def getChild(self, path: bytes, request: Any) -> Resource:
        if path in (b"", b"index.html"):
            return self.children[b"static"].children[b"index.html"]  # type: ignore[no-any-return]
        return _NotFound()


def make_root(
    auth: Authenticator,
    clock: IReactorTime,
    *,
    registry: Any,
    access_log: Any,
    listener: Any = None,
    dialer: Any = None,
    pacer: Any = None,
    doors: DoorCounts | None = None,
    recordings: Path | str,
    live_refresh: float = 1.0,
    static_dir: Path = STATIC,
) -> RootResource:
    """The resource tree; each part is given exactly what it reads."""
    root = RootResource(auth)
    root.putChild(
        b"healthz",
        HealthResource(clock, listener=listener, dialer=dialer, access_log=access_log),
    )
    root.putChild(b"login", LoginResource(auth, static_dir / "login.html"))
    root.putChild(b"logout", LogoutResource(auth))
    root.putChild(
        b"static",
        _StaticFiles(static_dir, ("index.html", "app.js", "style.css")),
    )
    collector = GatekeeperCollector(
        registry=registry, listener=listener, dialer=dialer, pacer=pacer, doors=doors
    )
    root.putChild(b"metrics", MetricsResource(make_registry(collector)))
    api = Resource()
    api.putChild(b"calls", CallsResource(registry, clock))
    api.putChild(b"visits", VisitsResource(access_log))
    api.putChild(b"me", _WhoAmI(auth, live_refresh))
    root.putChild(b"api", api)
    root.putChild(b"recordings", RecordingsResource(recordings))
    return root


class WebService(ListeningService):
    """The web ``Site`` on its endpoint, as a child of the service tree."""

    def __init__(self, reactor: Any, listen: str, root: Resource) -> None:
        self.site = Site(root)
        self.site.displayTracebacks = False
        self.root = root
        super().__init__(reactor, listen, self.site, "web service")

    def stopService(self) -> Deferred[None]:
        self.port = None
        return super().stopService()  # type: ignore[no-any-return]


def make_web_service(
    section: WebConfig,
    *,
    reactor: Any,
    registry: Any,
    access_log: Any,
    recordings: Path | str,
    listener: Any = None,
    dialer: Any = None,
    pacer: Any = None,
    doors: DoorCounts | None = None,
    environ: Mapping[str, str] | None = None,
) -> WebService | None:
    """
    The web service ``section`` describes, or None when it is not enabled.

    Raises :class:`WebSettingsError` when it is enabled without any
    credential: there is no default login, and the history is personal data.
    """
    if not section.enabled:
        return None
    credentials = section.credentials(environ)
    auth = Authenticator(
        credentials.token,
        credentials.users,
        reactor,
        session_timeout=section.session_timeout,
        secure_cookies=section.secure_cookies,
    )
    root = make_root(
        auth,
        reactor,
        registry=registry,
        access_log=access_log,
        listener=listener,
        dialer=dialer,
        pacer=pacer,
        doors=doors,
        recordings=recordings,
        live_refresh=section.live_refresh,
    )
    service = WebService(reactor, section.listen, root)
    service.setName("web")
    _log.info(
        "web service on {listen}: token {token}, {users} user(s)",
        listen=section.listen,
        token="set" if credentials.token else "not set",
        users=len(credentials.users),
    )
    return service
