"""Fixtures the CLI tests share with the dedicated-endpoint tests."""

from tests.dedicated.conftest import control_plane  # noqa: F401  (a fixture, used by name)
