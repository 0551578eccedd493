"""Tests for :mod:`gatekeeper.web`."""
