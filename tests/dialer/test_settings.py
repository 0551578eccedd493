"""AMISettings: the ``[ami]`` section, validated, with a secret that never shows."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from gatekeeper.dialer.settings import SECRET_ENV, AMISettings, AMISettingsError, Secret


class SettingsTests(SynchronousTestCase):
    """Reading and checking the [ami] section."""

    def test_defaults(self) -> None:
        """Only the secret is required; the rest has working defaults."""
        s = AMISettings.from_config({"secret": "pw"}, environ={})
        self.assertEqual(
            (
                s.endpoint,
                s.username,
                s.channel_template,
                s.resident_context,
                s.resident_exten,
                s.resident_priority,
                s.target,
                s.caller_id,
            ),
            (
                "tcp:127.0.0.1:5038",
                "gatekeeper",
                "PJSIP/{extension}",
                "gatekeeper-resident",
                "s",
                1,
                "127.0.0.1:9092",
                None,
            ),
        )
        self.assertEqual(s.secret.reveal(), "pw")

    def test_all_keys(self) -> None:
        """Every key is read, numbers parsed."""
        s = AMISettings.from_config(
            {
                "endpoint": "tcp:pbx.example:5038",
                "username": "gk",
                "secret": "pw",
                "channel_template": "Local/{extension}@phones/n",
                "resident_context": "res",
                "resident_exten": "start",
                "resident_priority": "2",
                "target": "[2001:db8::5]:9092",
                "caller_id": '"Gate" <100>',
                "action_timeout": "3.5",
                "originate_grace": "9",
                "backoff_initial": "0.5",
                "backoff_max": "30",
                "backoff_factor": "3",
                "visitor_ttl": "600",
                "visitor_max": "50",
                "events": "call,user",
            },
            environ={},
        )
        self.assertEqual(s.channel_for("101"), "Local/101@phones/n")
        self.assertEqual(
            (s.resident_priority, s.action_timeout, s.backoff_factor, s.visitor_max),
            (2, 3.5, 3.0, 50),
        )
        self.assertEqual((s.target, s.events), ("[2001:db8::5]:9092", "call,user"))

    def test_secret_from_environment(self) -> None:
        """GATEKEEPER_AMI_SECRET wins over the file, and may replace it."""
        s = AMISettings.from_config({"secret": "file"}, environ={SECRET_ENV: "env"})
        self.assertEqual(s.secret.reveal(), "env")
        s = AMISettings.from_config({}, environ={SECRET_ENV: "env"})
        self.assertEqual(s.secret.reveal(), "env")

    def test_secret_missing(self) -> None:
        """No secret anywhere is an error that says where to put one."""
        e = self.assertRaises(AMISettingsError, AMISettings.from_config, {}, {})
        self.assertIn(SECRET_ENV, str(e))

    def test_secret_never_shown(self) -> None:
        """Neither the settings' repr nor the secret's shows the secret."""
        s = AMISettings.from_config({"secret": "hunter2"}, environ={})
        for text in (repr(s), str(s), repr(s.secret), str(s.secret), f"{s.secret}"):
            self.assertNotIn("hunter2", text)

    def assertRefused(self, words: str, **section: str) -> None:
        e = self.assertRaises(
            AMISettingsError, AMISettings.from_config, {"secret": "pw", **section}, {}
        )
        self.assertIn(words, str(e))

    def test_bad_values(self) -> None:
        """Each bad value is refused naming its key."""
        self.assertRefused("channel_template", channel_template="PJSIP/101")
        self.assertRefused("channel_template", channel_template="PJSIP/{ext}")
        self.assertRefused("channel_template", channel_template="{extension}")
        self.assertRefused("target", target="9092")
        self.assertRefused("target", target="host:99999")
        self.assertRefused("resident_context", resident_context="a b")
        self.assertRefused("action_timeout", action_timeout="soon")
        self.assertRefused("visitor_max", visitor_max="1.5")
        self.assertRefused("backoff_initial", backoff_initial="0")
        self.assertRefused("backoff_max", backoff_initial="10", backoff_max="5")
        self.assertRefused("endpoint", endpoint="localhost")
        self.assertRefused("unknown key(s): secrett", secrett="x")

    def test_no_line_breaks(self) -> None:
        """Values that would break an AMI header are refused."""
        self.assertRaises(AMISettingsError, AMISettings, secret=Secret("a\r\nb"))
        self.assertRaises(
            AMISettingsError, AMISettings, secret=Secret("x"), caller_id="a\nb"
        )
