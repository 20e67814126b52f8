"""Shared test setup: async tests run on plain asyncio and on uvloop, and any
test that triggered the loop's exception handler or left tasks running fails."""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import AsyncIterator

import pytest

# Components run as root in the test suite (its roots live in pytest's private
# 0700 temporary folders, which ggc_user cannot enter); the tests of component
# users (tests/component/test_users.py) give their runtime ggc_user:ggc_group
# explicitly, and create it when missing.
os.environ.setdefault("EDGE_ACTORS_COMPONENT_USER", "root:root")

try:
    import uvloop  # noqa: F401

    _BACKENDS = [
        pytest.param(("asyncio", {"use_uvloop": False}), id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    ]
except ImportError:  # armv7l: no uvloop wheel
    _BACKENDS = [pytest.param(("asyncio", {"use_uvloop": False}), id="asyncio")]


@pytest.fixture(params=_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, bool]]:
    return request.param


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Async test modules say `pytestmark = pytest.mark.anyio` (that runs them on
    # both loops); every async test also gets the loop guard.
    for item in items:
        function = getattr(item, "function", None)
        if function is not None and inspect.iscoroutinefunction(function):
            if item.get_closest_marker("anyio") is None:
                raise pytest.UsageError(f"{item.nodeid}: async test module lacks pytest.mark.anyio")
            item.fixturenames.append("loop_guard")  # type: ignore[attr-defined]


@pytest.fixture
async def loop_guard() -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    before = set(asyncio.all_tasks())
    yield
    # Give callbacks scheduled by the test's last steps one turn to run.
    await asyncio.sleep(0)
    leftover = [
        t for t in asyncio.all_tasks() - before
        if not t.done() and t is not asyncio.current_task()
        # anyio's test runner wraps each fixture/test step in a task of its own
        and not getattr(t.get_coro(), "__qualname__", "").startswith("TestRunner.")
    ]
    loop.set_exception_handler(previous)
    assert not errors, f"the event loop's exception handler was called: {errors}"
    assert not leftover, f"tasks left running after the test: {leftover}"
