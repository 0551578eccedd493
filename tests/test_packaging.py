"""What a plain ``pip install .`` ships."""

from __future__ import annotations

import configparser
from pathlib import Path

from setuptools import find_packages
from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).parent.parent


class PackagingTests(SynchronousTestCase):
    def test_every_package_listed(self) -> None:
        """setup.cfg lists every gatekeeper package and twisted.plugins (find: would drop it)."""
        setup = configparser.ConfigParser()
        setup.read(ROOT / "setup.cfg")
        listed = set(setup["options"]["packages"].split())
        found = set(find_packages(str(ROOT), include=["gatekeeper", "gatekeeper.*"]))
        self.assertEqual(listed, found | {"twisted.plugins"})
        self.assertEqual(
            setup["options"]["package_dir"].split(),
            ["twisted.plugins", "=", "twisted_plugins"],
        )

    def test_no_init_in_plugins(self) -> None:
        """twisted_plugins/ has no __init__.py, or it would shadow Twisted's own plugins."""
        self.assertFalse((ROOT / "twisted_plugins" / "__init__.py").exists())
