"""The dashboard in Jupyter Notebook 7 (issue 14.6); JupyterLab and Voila are the ``dashboard``
fixture's pages, tested throughout ``test_dashboard_e2e.py``.

Notebook 7 is built from JupyterLab's parts but is its own application (its own shell, page
layout and widget manager set-up): the quickstart is run there with Run All and its first
frames must equal the expected pictures, as in Lab and Voila; then a unit change through the
slider redraws the grid's ring and the projection.
"""

from __future__ import annotations

import pytest

from tests.browser.e2e_support import (
    Dashboard,
    State,
    screenshot,
    set_slider_via_readout,
    wait_slider_value,
)
from tests.browser.test_dashboard_e2e import check_initial_frames, expect_frames

pytestmark = pytest.mark.browser


def test_notebook7_shows_the_quickstart_and_follows_the_slider(notebook7: Dashboard) -> None:
    dash, page, e = notebook7, notebook7.page, notebook7.expected
    check_initial_frames(dash)
    layer = e.default_layer
    start = dash.subject.image_after_run()
    unit = next(u for u in e.alive_units(layer, start) if u != dash.subject.unit_after_run)
    set_slider_via_readout(page, unit)
    wait_slider_value(page, unit)
    expect_frames(dash, State(layer, unit, start, dash.subject.method_after_run),
                  parts=("grid", "unit", "projection"))
    assert f"unit={unit}" in (dash.kernel("print(repr(view))") or "")
    screenshot(page, "notebook7_dashboard")
