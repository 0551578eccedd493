"""``[web]``: parsed by the generic config loader, checked for credentials."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from gatekeeper.config import ConfigError, _section
from gatekeeper.web.settings import TOKEN_ENV, WebConfig, WebSettingsError

from .support import PASSWORD_HASH, TOKEN


def load(**items: str) -> WebConfig:
    """``[web]`` with ``items``, through the loader every section uses."""
    return _section(WebConfig, "web", items, "gk.ini")  # type: ignore[no-any-return]


class WebConfigTests(SynchronousTestCase):
    """What the section accepts and refuses."""

    def test_defaults(self) -> None:
        """Off, on localhost:8080, with no credential."""
        config = WebConfig()
        self.assertEqual(
            (config.enabled, config.listen, config.token, config.users),
            (False, "tcp:8080:interface=127.0.0.1", "", ()),
        )

    def test_values(self) -> None:
        """Every key converts from the file's text."""
        config = load(
            enabled="yes",
            listen="tcp:9000:interface=0.0.0.0",
            token=TOKEN,
            users=f"ana:{PASSWORD_HASH}\nbob:{PASSWORD_HASH}",
            session_timeout="3600",
            secure_cookies="yes",
            live_refresh="2",
        )
        self.assertTrue(config.enabled and config.secure_cookies)
        self.assertEqual(len(config.users), 2)
        self.assertEqual(config.credentials({}).users["bob"], PASSWORD_HASH)

    def test_short_token(self) -> None:
        """A token too short to be a secret is refused, without echoing it."""
        error = self.assertRaises(ConfigError, load, token="hunter2")
        self.assertIn("at least 24 characters", str(error))

    def test_plain_password(self) -> None:
        """A user given a plain password, not a hash, is refused by name."""
        error = self.assertRaises(ConfigError, load, users="ana:hunter2")
        self.assertIn("user 'ana'", str(error))
        self.assertIn("gatekeeper-passwd", str(error))

    def test_duplicate_user(self) -> None:
        """One name, one hash."""
        users = f"ana:{PASSWORD_HASH}, ana:{PASSWORD_HASH}"
        self.assertRaises(ConfigError, load, users=users)

    def test_bad_endpoint(self) -> None:
        """listen is a Twisted server endpoint string."""
        self.assertRaises(ConfigError, load, listen="http://localhost")

    def test_no_credential_refused(self) -> None:
        """Enabled with nothing to log in with: refused, with what to set."""
        error = self.assertRaises(
            WebSettingsError, WebConfig(enabled=True).credentials, {}
        )
        self.assertIn("no credential", str(error))
        self.assertIn(TOKEN_ENV, str(error))

    def test_token_from_environment(self) -> None:
        """The token may come from $GATEKEEPER_WEB_TOKEN (checked the same)."""
        credentials = WebConfig(enabled=True).credentials({TOKEN_ENV: TOKEN})
        self.assertEqual(credentials.token, TOKEN)
        self.assertRaises(
            WebSettingsError, WebConfig().credentials, {TOKEN_ENV: "short"}
        )

    def test_repr_hides_secrets(self) -> None:
        """Neither the token nor a hash shows in a repr (logs, tracebacks)."""
        text = repr(WebConfig(token=TOKEN, users=(f"ana:{PASSWORD_HASH}",)))
        self.assertNotIn(TOKEN, text)
        self.assertNotIn(PASSWORD_HASH, text)
