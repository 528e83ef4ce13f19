"""Test-wide settings: deterministic torch, two threads like the CI machine."""

from __future__ import annotations

from typing import Any

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    torch.manual_seed(0)



# ------------------------------------------------------------------ work units for two workers
# `make test` runs `pytest -n 2 --dist loadfile --no-loadscope-reorder` with the scheduler
# below: each test file is one unit of work (its module-scoped servers and pages stay in one
# worker), except the files listed here, whose tests are units of their own (one notebook each,
# 15-60 s apiece). Units go out in collection order, which puts the browser files first (each
# starts its own servers, 20-60 s), then the other slow tests, then the many quick ones, which
# fill in whichever worker ends first. xdist's own order (most tests first) ran the few-test
# browser files last, so one worker went on alone for minutes at the end.
# Files sharing session-scoped pages are one unit (``tests/browser/conftest.py``'s
# ``dashboard``: the quickstart in Lab and Voila, 40-50 s to open).
ONE_UNIT_PER_TEST = {"tests/browser/test_notebooks_voila.py", "tests/test_notebooks.py"}
SAME_UNIT_AS = {"tests/browser/test_keyboard_e2e.py": "tests/browser/test_dashboard_e2e.py"}


def work_unit(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    return nodeid if path in ONE_UNIT_PER_TEST else SAME_UNIT_AS.get(path, path)


def _heaviness(item: pytest.Item) -> int:
    """0 for browser tests, 1 for other slow ones, 2 for the rest."""
    if item.get_closest_marker("browser"):
        return 0
    return 1 if item.get_closest_marker("slow") else 2


class _HeavyUnitsFirst:
    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        """Each unit ranks as its heaviest test; a stable sort keeps pytest's order inside a
        unit (tests sharing a parametrized fixture stay together)."""
        rank: dict[str, int] = {}
        for item in items:
            unit = work_unit(item.nodeid)
            rank[unit] = min(rank.get(unit, 2), _heaviness(item))
        items.sort(key=lambda item: rank[work_unit(item.nodeid)])


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(_HeavyUnitsFirst(), "heavy-units-first")


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile`` with :func:`work_unit` as the unit (xdist's ``loadgroup`` marks
    are ignored under pytest 9.2: xdist 3.8 renames ``item._nodeid``, which pytest no longer
    reads)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class UnitScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return UnitScheduling(config, log)
