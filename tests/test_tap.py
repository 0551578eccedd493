"""The twistd plugin and its options."""

from __future__ import annotations

import os
from pathlib import Path

from twisted.application.service import IServiceMaker, MultiService
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from gatekeeper.config import Config
from gatekeeper.tap import Options, makeService


class OptionsTests(SynchronousTestCase):
    def parse(self, *argv: str) -> Options:
        options = Options()
        options.parseOptions(list(argv))
        return options

    def test_defaults(self) -> None:
        """With no options and no etc/gatekeeper.ini here, the embedded defaults apply."""
        empty = Path(self.mktemp())
        empty.mkdir()
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(empty)
        options = Options()
        options.parseOptions([])
        self.assertEqual(options["gatekeeper_config"], Config())

    def test_overrides(self) -> None:
        """--listen and --app override the file, through the same validation."""
        options = self.parse(
            "--listen", "tcp:19999:interface=127.0.0.1", "--app", "echo"
        )
        section = options["gatekeeper_config"].audiosocket
        self.assertEqual(section.listen, "tcp:19999:interface=127.0.0.1")
        self.assertEqual(section.app, "echo")

    def test_bad_listen(self) -> None:
        """A bad --listen is a usage error that says what is wrong."""
        error = self.assertRaises(usage.UsageError, self.parse, "--listen", "nonsense")
        self.assertIn("listen", str(error))

    def test_bad_app(self) -> None:
        """An unknown --app is a usage error."""
        self.assertRaises(usage.UsageError, self.parse, "--app", "karaoke")

    def test_config_file(self) -> None:
        """--config reads the named file; a bad value there is a usage error naming it."""
        path = Path(self.mktemp())
        path.write_text("[audiosocket]\nidle_timeout = soon\n")
        error = self.assertRaises(usage.UsageError, self.parse, "--config", str(path))
        self.assertIn(str(path), str(error))
        self.assertIn("idle_timeout", str(error))

    def test_missing_config(self) -> None:
        """A --config that does not exist is refused, not silently defaulted."""
        self.assertRaises(usage.UsageError, self.parse, "--config", "/nonexistent.ini")

    def test_make_service(self) -> None:
        """makeService builds the tree with the AudioSocket listener in it."""
        service = makeService(
            self.parse("--listen", "tcp:0:interface=127.0.0.1", "--app", "echo")
        )
        self.assertIsInstance(service, MultiService)
        self.assertIsNotNone(service.getServiceNamed("audiosocket"))  # type: ignore[attr-defined]

    def test_cannot_start_cleanly(self) -> None:
        """A visit app whose directory is missing stops with one clear line."""
        path = Path(self.mktemp())
        path.write_text("[directory]\nfile = /nonexistent/residents.csv\n")
        error = self.assertRaises(
            SystemExit, makeService, self.parse("--config", str(path))
        )
        self.assertIn("/nonexistent/residents.csv", str(error))
        self.assertIn("[directory] file", str(error))


class PluginTests(SynchronousTestCase):
    def test_plugin_module(self) -> None:
        """twisted_plugins/gatekeeper_plugin.py is a service maker for gatekeeper.tap."""
        import importlib.util

        path = Path(__file__).parent.parent / "twisted_plugins" / "gatekeeper_plugin.py"
        spec = importlib.util.spec_from_file_location("gatekeeper_plugin", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        maker = module.gatekeeper
        self.assertTrue(IServiceMaker.providedBy(maker))
        self.assertEqual(
            (maker.tapname, maker.module), ("gatekeeper", "gatekeeper.tap")
        )

    def test_plugin_installed(self) -> None:
        """Installed, Twisted's own plugin scan finds 'gatekeeper' (twistd relies on it)."""
        import twisted.plugins

        makers = {p.tapname: p for p in getPlugins(IServiceMaker, twisted.plugins)}
        if "gatekeeper" not in makers:
            raise SkipTest(
                "gatekeeper is not installed (pip install .), so twisted.plugins "
                "cannot contain it; .ci/run installs it and runs this test"
            )
        self.assertEqual(makers["gatekeeper"].module, "gatekeeper.tap")
