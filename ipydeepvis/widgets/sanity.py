"""The sanity-check pane: the selected unit's projection with the weights randomized.

One toggle switches the projection between the trained weights and weights re-initialized
(Adebayo et al. 2018) from the top of the model down to the chosen depth (cascading) or at that
depth alone (independent); the trained projection stays beside it, and the similarity of the
two (Spearman rank correlation of absolute values, SSIM) is printed. A projection that hardly
changes shows the image's structure rather than what the network learned. Every number comes
from :mod:`ipydeepvis.core.sanity`; the randomization runs on a copy of the model.
"""

from __future__ import annotations

import html
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
import numpy as np
import numpy.typing as npt
import torch

from .. import render
from ..core.sanity import MODES, SanityCheck, depths, sanity_check
from .analyses import JobPane
from .panes import NEUTRAL, PANE, ViewState
from .tiles import TileCanvas

if TYPE_CHECKING:
    from .dashboard import DeepVis

__all__ = ["SanityPane", "SanityView"]

TRAINED = "trained"


@dataclass(frozen=True)
class SanityView:
    """What :class:`SanityPane` computed: the trained projection and, when the weights are
    randomized, the check (None for the trained weights)."""

    trained: torch.Tensor
    check: SanityCheck | None
    trained_peak: float


class SanityPane(JobPane):
    """The selected unit's projection with trained and with randomized weights, side by side,
    and how similar they are.

    Computed while its tab is shown, following the selection (a hidden tab costs nothing).
    """

    name = "sanity"
    title = "sanity check"
    depends = frozenset({"layer", "unit", "image_index", "epoch", "method", "position",
                         "clicked", "display", "contrast"})
    auto = True  # computes while its tab is shown (DeepVis.tab_shown)

    def __init__(self, view: DeepVis) -> None:
        super().__init__(view)
        self.mode = widgets.ToggleButtons(
            options=[TRAINED, *MODES], value=TRAINED, description="weights",
            style={"button_width": "112px"},
            tooltips=["the model's weights", "re-initialized from the top of the model down "
                      "to the chosen depth", "re-initialized at the chosen depth only"])
        self.mode.add_class("e2e-sanity-mode")
        self.depth = widgets.Dropdown(description="depth", layout=widgets.Layout(width="320px"))
        self.depth.add_class("e2e-sanity-depth")
        self.seed = widgets.BoundedIntText(0, min=0, max=2**31 - 1, description="seed",
                                           layout=widgets.Layout(width="180px"))
        self._following = False
        self._follow_layer()
        for control in (self.mode, self.depth, self.seed):
            control.observe(self._option_changed, names="value")
        view.observe(lambda _change: self._follow_layer(), names="layer")
        self.controls = [self.mode, widgets.HBox([self.depth, self.seed])]
        self.trained_canvas = TileCanvas(PANE, PANE, "e2e-sanity-trained")
        self.canvas = TileCanvas(PANE, PANE, "e2e-sanity-projection")
        self.caption = widgets.HTML("<b>trained weights</b>",
                                    layout=widgets.Layout(width=f"{PANE}px"))
        self.similarity = widgets.HTML(layout=widgets.Layout(width="320px"))
        self.similarity.add_class("e2e-sanity-similarity")
        gap = widgets.Layout(margin="0 12px 0 0", flex="0 0 auto")  # never squeezed
        self.outputs = [widgets.HBox([
            widgets.VBox([widgets.HTML("<b>trained</b>"), self.trained_canvas], layout=gap),
            widgets.VBox([self.caption, self.canvas], layout=gap),
            self.similarity,
        ], layout=widgets.Layout(flex_flow="row wrap"))]  # narrow: the text goes below
        self.assemble("Does the projection depend on what the network learned? Re-initialize "
                      "the weights (Adebayo et al. 2018) from the top of the model down to a "
                      "depth (cascading) or one layer alone (independent) and compare: a "
                      "projection that hardly changes shows the image, not the network.")

    # -- controls ------------------------------------------------------------------------------

    def _follow_layer(self) -> None:
        """Offer the depths that can change the selected layer's projections (top first),
        the layer's own first."""
        view = self.view
        layer = view.layer or next(iter(view._layers))
        options = depths(view.probe, layer)
        self._following = True
        try:
            self.depth.options = options
            self.depth.value = options[0] if options else None
        finally:
            self._following = False
        self.request()

    def _option_changed(self, _change: Any) -> None:
        if not self._following:
            self.request()


    def key(self, state: ViewState) -> Hashable:
        position = self.view._seed_position(state)
        return (state.epoch, state.layer, state.unit, state.image_index, state.method,
                position, self.mode.value, self.depth.value, self.seed.value)

    # -- the job -------------------------------------------------------------------------------

    def compute(self, state: ViewState) -> SanityView:
        view = self.view
        probe = self.probe_of(view.model_at(state.epoch))
        x = view._model_input(view._images[state.image_index])
        position = view._seed_position(state)
        mode, depth = self.mode.value, self.depth.value
        self.progress(0, 1)
        if mode == TRAINED or depth is None:
            trained = probe.project(x, state.layer, state.unit, method=state.method,
                                    position=position)[0]
            peak = float(probe.activations(x, [state.layer])[state.layer][0, state.unit].max())
            self.progress(1, 1)
            return SanityView(trained, None, peak)
        check = sanity_check(probe, x, state.layer, state.unit, depth=depth, mode=mode,
                             method=state.method, position=position, seed=self.seed.value)
        self.progress(1, 1)
        return SanityView(check.trained, check, check.trained_peak)

    def result_bytes(self, result: Any) -> int:
        size = result.trained.numel() * 4
        return size * (2 if result.check is not None else 1) + 512

    # -- drawing -------------------------------------------------------------------------------

    def picture(self, values: torch.Tensor, state: ViewState) -> npt.NDArray[np.uint8]:
        """A projection as the projection pane draws it (display mode and contrast)."""
        if not bool(torch.isfinite(values).any()):
            return np.full((PANE, PANE, 4), (NEUTRAL,) * 3 + (255,), np.uint8)
        shown = render.projection_picture(values.nan_to_num(0.0), state.display, state.contrast)
        return render.to_rgba(render.resize_nearest(shown, PANE, PANE))

    def draw(self, result: SanityView, state: ViewState) -> None:
        self.trained_canvas.show(self.picture(result.trained, state))
        check = result.check
        notes = []
        if result.trained_peak <= 0:
            notes.append(f"<span class='deepvis-warn'>unit {state.unit} does not fire on this "
                         f"image (max {result.trained_peak:.3g}): both projections show "
                         "little of it</span>")
        if check is None:
            self.canvas.show(self.picture(result.trained, state))
            self.caption.value = "<b>trained weights</b>"
            if self.depth.value is None:
                notes.insert(0, f"no layer with weights lies at or below "
                                f"{html.escape(state.layer)}: nothing to randomize")
            else:
                notes.insert(0, "weights as trained: choose <b>cascading</b> or "
                                "<b>independent</b> to re-initialize them")
            self.similarity.value = "<br>".join(notes)
            return
        self.canvas.show(self.picture(check.projection, state))
        where = (f"top down to {check.depth}" if check.mode == "cascading"
                 else f"{check.depth} only")
        self.caption.value = f"<b>randomized</b> ({html.escape(check.mode)}: " \
                             f"{html.escape(where)})"
        changed = ", ".join(check.effective) or "none"
        lines = [f"<b>Spearman (abs)</b> {check.spearman:.3f} · <b>SSIM</b> {check.ssim:.3f}",
                 f"re-initialized: {html.escape(', '.join(check.randomized))}",
                 f"of them below the unit: {html.escape(changed)}",
                 f"unit's max activation: trained {check.trained_peak:.3g}, randomized "
                 f"{check.peak:.3g}", *notes]
        self.similarity.value = "<br>".join(lines)

    def clear(self) -> None:
        self.similarity.value = ""
        for canvas in (self.trained_canvas, self.canvas):  # no picture of another selection
            if canvas.frame is not None:
                canvas.show(np.zeros_like(canvas.frame))

    def summary(self, result: Any, state: ViewState) -> str:
        check = result.check
        if check is None:
            return f"unit {state.unit}: trained weights"
        return (f"unit {state.unit}: {check.mode} to {check.depth}, Spearman "
                f"{check.spearman:.3f}, SSIM {check.ssim:.3f}")

    def frames(self) -> dict[str, npt.NDArray[np.uint8] | None]:
        return {"sanity_trained": self.trained_canvas.frame, "sanity": self.canvas.frame}
