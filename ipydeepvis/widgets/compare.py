"""The compare pane: the selected unit in two models side by side, and their difference.

Two saved epochs of the dashboard's run, or the dashboard's model and another with the same
layer names (``DeepVis(model, images, compare=other)``): for the dashboard's layer, unit,
image, method and seed, both projections and ``B - A`` (each divided by its largest
magnitude first, so the difference shows a change of pattern, not of strength). The
dashboard's epoch slider moves A; the pane's picker chooses B.
"""

from __future__ import annotations

import html
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
import numpy as np
import numpy.typing as npt
from torch import nn

from .. import render
from ..core.compare import Comparison, compare_projections
from ..core.probe import Probe
from .analyses import JobPane
from .panes import PANE, ViewState
from .tiles import TileCanvas

if TYPE_CHECKING:
    from .dashboard import DeepVis

__all__ = ["OTHER_MODEL", "ComparePane", "comparison_frames"]

OTHER_MODEL = "other model"
"""The picker's choice for the model passed as ``DeepVis(compare=...)``."""


def comparison_frames(result: Comparison, display: str = "raw",
                      contrast: float = 1.0) -> dict[str, npt.NDArray[np.uint8]]:
    """The pane's three RGBA frames: A and B in the dashboard's display mode and contrast,
    and B - A averaged over colour channels (red positive, blue negative, grey zero)."""
    out = {}
    for part, values in (("a", result.a), ("b", result.b)):
        picture = render.projection_picture(values.nan_to_num(0.0), display, contrast)
        out[part] = render.to_rgba(render.resize_nearest(picture, PANE, PANE))
    difference = result.difference.double().mean(0).nan_to_num(0.0).numpy()
    out["difference"] = render.signed_rgba(difference, float(np.abs(difference).max()),
                                           (PANE, PANE))
    return out


class ComparePane(JobPane):
    """Projections of the selected unit in model A (the dashboard's, at its epoch) and model B
    (another saved epoch, or ``compare=``), and the normalised difference B - A."""

    name = "compare"
    title = "compare"
    auto = True
    depends = frozenset({"layer", "unit", "image_index", "epoch", "method", "position",
                         "clicked", "display", "contrast"})

    def __init__(self, view: DeepVis) -> None:
        super().__init__(view)
        self._probes: dict[Any, Probe] = {}
        options: list[tuple[str, Any]] = []
        if view._compare_model is not None:
            options.append((OTHER_MODEL, OTHER_MODEL))
        if view.scrubber is not None:
            options += [(f"epoch {e}", e) for e in view.scrubber.epochs]
        self.other = widgets.Dropdown(options=options, description="B",
                                      layout=widgets.Layout(width="220px"))
        self.other.add_class("e2e-compare-other")
        self.other.observe(lambda _c: self.request(), names="value")
        self.controls = [self.other] if options else []
        self.canvases = {part: TileCanvas(PANE, PANE, f"e2e-compare-{part}")
                         for part in ("a", "b", "difference")}
        self.captions = {part: widgets.HTML() for part in self.canvases}
        self.numbers = widgets.HTML()
        self.numbers.add_class("e2e-compare-numbers")
        # three grey squares apart (not one bar), never squeezed over each other
        gap = widgets.Layout(margin="0 12px 0 0", flex="0 0 auto")
        self.outputs = [widgets.HBox([widgets.VBox([self.captions[p], self.canvases[p]],
                                                   layout=gap)
                                      for p in self.canvases],
                                     layout=widgets.Layout(flex_flow="row wrap")), self.numbers]
        self.run_button.layout.display = "none"  # auto: every selection is computed
        self.stop_button.layout.display = "none"
        explanation = ("The selected unit in two models: A is the dashboard's model at its "
                       "epoch, B the one picked here. Right: B - A, each projection divided by "
                       "its largest magnitude first (red: B stronger, blue: A stronger), so a "
                       "unit that only grew stronger shows grey.")
        if not options:
            explanation += (" <b>Nothing to compare:</b> pass <code>checkpoints=</code> (saved "
                            "epochs) or <code>compare=</code> (a model with the same layer "
                            "names) to DeepVis.")
        self.assemble(explanation)

    def key(self, state: ViewState) -> Hashable:
        return (state.layer, state.unit, state.image_index, state.epoch, state.method,
                state.position, state.clicked, state.display, state.contrast, self.other.value)

    def _probe(self, which: Any) -> Probe:
        """A probe of its own per model (this pane's worker never shares the dashboard's)."""
        probe = self._probes.get(which)
        if probe is None:
            view = self.view
            model: nn.Module | None = (view._compare_model if which == OTHER_MODEL
                                       else view.model_at(int(which)))
            assert model is not None
            probe = Probe(model, input_shape=self._input_shape())
            # keep A's and B's probes (and drop older epochs' with their model copies)
            self._probes = {**dict(list(self._probes.items())[-1:]), which: probe}
        return probe

    def compute(self, state: ViewState) -> Comparison | None:
        if self.other.value is None:
            return None
        view = self.view
        probe_a = self._probe(state.epoch) if state.epoch >= 0 and view.scrubber is not None \
            else self._probe_as_given()
        probe_b = self._probe(self.other.value)
        self.progress(0, 2)
        result = compare_projections(probe_a, probe_b,
                                     view._model_input(view._images[state.image_index]),
                                     state.layer, state.unit, method=state.method,
                                     position=view._seed_position(state))
        self.progress(2, 2)
        return result

    def _probe_as_given(self) -> Probe:
        probe = self._probes.get("as given")
        if probe is None:
            view = self.view
            assert view._model is not None
            probe = Probe(view._model, input_shape=self._input_shape())
            self._probes["as given"] = probe
        return probe

    def _input_shape(self) -> tuple[int, ...]:
        view = self.view
        return tuple(view._model_input(view._images[0]).shape)

    def release(self) -> None:
        super().release()
        self._probes = {}

    def names(self, state: ViewState) -> tuple[str, str]:
        a = f"epoch {state.epoch}" if state.epoch >= 0 else "the model"
        b = OTHER_MODEL if self.other.value == OTHER_MODEL else f"epoch {self.other.value}"
        return a, b

    def draw(self, result: Comparison | None, state: ViewState) -> None:
        if result is None:
            self.clear()
            return
        name_a, name_b = self.names(state)
        for part, picture in comparison_frames(result, state.display, state.contrast).items():
            self.canvases[part].show(picture)
        self.captions["a"].value = f"<b>A</b>: {html.escape(name_a)}"
        self.captions["b"].value = f"<b>B</b>: {html.escape(name_b)}"
        self.captions["difference"].value = "<b>B - A</b> (normalised)"
        silent = [n for n, peak in ((name_a, result.peak_a), (name_b, result.peak_b))
                  if peak <= 0]
        warn = "".join(f"<br><span class='deepvis-warn'>unit {state.unit} is not active in "
                       f"{html.escape(n)} on this image</span>" for n in silent)
        self.numbers.value = (f"unit {state.unit} of {html.escape(state.layer)}: activation "
                              f"{result.peak_a:.3g} (A), {result.peak_b:.3g} (B) · correlation "
                              f"of the projections {result.correlation:.3f}{warn}")

    def clear(self) -> None:
        for canvas in self.canvases.values():
            canvas.show(np.full((PANE, PANE, 4), (128, 128, 128, 255), np.uint8))
        self.numbers.value = ""

    def summary(self, result: Any, state: ViewState) -> str:
        if result is None:
            return "nothing to compare"
        return "B - A"

    def frames(self) -> dict[str, npt.NDArray[np.uint8] | None]:
        return {f"compare_{part}": canvas.frame for part, canvas in self.canvases.items()}
