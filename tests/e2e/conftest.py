"""The server mode as a parameter: every e2e test runs against the fast path and against ``--no-fast-path``.

``server_mode`` is a module-scoped autouse fixture: it sets NO_FAST_PATH_ENV, which
``tests.conftest.Server`` reads when it starts a server, so every server a test starts
runs in that mode. A module-scoped fixture that starts servers must request
``server_mode``, so that it starts them again for the second mode. A module marked
``both_paths`` compares both modes itself (``fast_and_asgi``) and runs once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from ..conftest import NO_FAST_PATH_ENV

MODES = ("fast-path", "no-fast-path")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "both_paths: the module compares the fast path and --no-fast-path itself")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "server_mode" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_paths") is None:
        metafunc.parametrize("server_mode", MODES, indirect=True, scope="module")


@pytest.fixture(scope="module", autouse=True)
def server_mode(request: pytest.FixtureRequest) -> Iterator[str]:
    mode: str = getattr(request, "param", MODES[0])
    saved = os.environ.get(NO_FAST_PATH_ENV)
    os.environ[NO_FAST_PATH_ENV] = "1" if mode == "no-fast-path" else "0"
    yield mode
    if saved is None:
        os.environ.pop(NO_FAST_PATH_ENV, None)
    else:
        os.environ[NO_FAST_PATH_ENV] = saved
