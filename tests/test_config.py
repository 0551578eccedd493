"""Configuration loading and its error messages."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from gatekeeper.config import Config, ConfigError, load_config, parse_config

SAMPLE = Path(__file__).parent.parent / "etc" / "gatekeeper.ini"


class ConfigTests(SynchronousTestCase):
    def test_sample_is_the_defaults(self) -> None:
        """etc/gatekeeper.ini, every option commented, parses to the embedded defaults."""
        config = load_config(SAMPLE)
        self.assertEqual(config, Config(path=str(SAMPLE)))

    def test_sample_documents_every_key(self) -> None:
        """Every key of every section appears (commented) in the sample file."""
        import attrs

        from gatekeeper.config import _SECTIONS

        text = SAMPLE.read_text()
        for name, cls in _SECTIONS.items():
            self.assertIn(f"[{name}]", text)
            for key in attrs.fields(cls):
                self.assertRegex(text, f"\n#? ?{key.name} =", f"{name}.{key.name}")
        for name in ("[ami]", "[door]", "[directory.gates]"):
            self.assertIn(name, text)

    def test_no_file_means_defaults(self) -> None:
        """No path gives the embedded defaults."""
        self.assertEqual(load_config(None), Config())

    def test_values(self) -> None:
        """Values convert by the field's type."""
        config = parse_config(
            "[audiosocket]\nlisten = tcp:0\nidle_timeout = 12.5\n"
            "allow = 10.0.0.0/8, 192.0.2.1\nmax_connections = 7\n"
        )
        self.assertEqual(config.audiosocket.idle_timeout, 12.5)
        self.assertEqual(config.audiosocket.allow, ("10.0.0.0/8", "192.0.2.1"))
        self.assertEqual(config.audiosocket.max_connections, 7)

    def check_error(self, text: str, *fragments: str) -> None:
        error = self.assertRaises(ConfigError, parse_config, text, "gk.ini")
        for fragment in fragments:
            self.assertIn(fragment, str(error))

    def test_bad_number(self) -> None:
        """A non-number names file, section, key and value."""
        self.check_error(
            "[pacer]\nslots = many\n", "gk.ini", "[pacer]", "slots", "'many'"
        )

    def test_out_of_range(self) -> None:
        """A value outside its range is refused with the bound."""
        self.check_error("[audiosocket]\nidle_timeout = 0\n", "idle_timeout", "> 0")

    def test_bad_endpoint(self) -> None:
        """A listen value that is no endpoint description is refused."""
        self.check_error("[audiosocket]\nlisten = carrier-pigeon\n", "listen")

    def test_bad_network(self) -> None:
        """An allowlist entry that is no network is refused, naming it."""
        self.check_error("[audiosocket]\nallow = 127.0.0.1, lan\n", "'lan'")

    def test_unknown_key(self) -> None:
        """A misspelt key is refused, listing the known ones."""
        self.check_error(
            "[audiosocket]\nidel_timeout = 3\n", "idel_timeout", "known keys"
        )

    def test_unknown_section(self) -> None:
        """A section nobody reads is refused."""
        self.check_error("[audio]\n", "unknown section [audio]")

    def test_unknown_app(self) -> None:
        """An app that does not exist is refused."""
        self.check_error("[audiosocket]\napp = karaoke\n", "app", "karaoke")

    def test_syntax(self) -> None:
        """A line that is not INI is refused with the file's name."""
        self.check_error("listen = tcp:1\n", "gk.ini")

    def test_unreadable(self) -> None:
        """A missing file is a clear error naming it."""
        error = self.assertRaises(ConfigError, load_config, "/nonexistent/gk.ini")
        self.assertIn("/nonexistent/gk.ini", str(error))
