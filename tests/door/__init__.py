"""Tests for :mod:`gatekeeper.door`."""
