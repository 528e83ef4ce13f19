"""Backward rules for rectifiers: what turns a gradient into a deconvnet or guided backprop.

For a conv -> ReLU -> max-pool stack, autograd already does two of Zeiler & Fergus's three
deconvnet steps: max pooling's backward routes the signal through the recorded switches
(adding up where overlapping windows share one), and a convolution's backward is the
transposed convolution without bias. The three projection methods differ only in what the
ReLU does on the way back, given its forward output ``y`` and the incoming signal ``g``:

=============  =========================  ==========================================
method         ReLU backward              source
=============  =========================  ==========================================
``gradient``   ``g * (y > 0)``            Simonyan et al. 2013 (saliency)
``deconvnet``  ``relu(g)``                Zeiler & Fergus 2014 ("rectify")
``guided``     ``relu(g) * (y > 0)``      Springenberg et al. 2014 (guided backprop)
=============  =========================  ==========================================

:class:`RectifierRules` is a ``TorchFunctionMode``: while it is active, every ReLU call --
``nn.ReLU`` modules (which call ``F.relu``), in-place ones, reused ones, and ``F.relu`` /
``torch.relu`` / ``Tensor.relu(_)`` written directly in a model's ``forward`` -- runs
:class:`_SwitchableReLU`, whose backward reads the method from a :class:`RuleSwitch` *at
backward time*. So one recorded forward serves every method and every unit. The mode lives
for one ``with`` block and leaves nothing behind; module backward hooks (which break on
in-place ReLUs) are never used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

__all__ = [
    "METHODS",
    "RectifierCall",
    "RectifierCoverage",
    "RectifierRules",
    "RuleSwitch",
    "relu_call",
]

METHODS: tuple[str, ...] = ("deconvnet", "guided", "gradient")

# ReLU entry points. F.relu(x, inplace=True) is caught before it reaches torch.relu_.
_RELU_OUT_OF_PLACE = {F.relu, torch.relu, torch.Tensor.relu}
_RELU_IN_PLACE = {F.relu_, torch.relu_, torch.Tensor.relu_}

# Other rectifiers / activations: the rules are not defined for them, they keep their
# own gradient. Listed so that the coverage report can say so.
_OTHER_ACTIVATIONS: dict[Any, str] = {
    F.relu6: "relu6",
    F.hardtanh: "hardtanh (ReLU6)",
    F.hardtanh_: "hardtanh (ReLU6)",
    F.leaky_relu: "leaky_relu",
    F.leaky_relu_: "leaky_relu",
    F.elu: "elu",
    F.elu_: "elu",
    F.selu: "selu",
    F.celu: "celu",
    F.gelu: "gelu",
    F.silu: "silu",
    F.mish: "mish",
    F.hardswish: "hardswish",
    F.softplus: "softplus",
    F.prelu: "prelu",
    torch.prelu: "prelu",
}



def relu_call(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
              ) -> tuple[Any, bool] | None:
    """``(input, in place)`` when ``func(*args, **kwargs)`` is a ReLU call (any spelling),
    else None."""
    if func not in _RELU_OUT_OF_PLACE and func not in _RELU_IN_PLACE:
        return None
    x = args[0] if args else kwargs.get("input")
    inplace = func in _RELU_IN_PLACE or bool(
        kwargs.get("inplace", args[1] if len(args) > 1 else False)
    )
    return x, inplace


_UNTOUCHED_NOTE = (
    "kept its ordinary gradient: the deconvnet and guided-backprop rules are defined "
    "for ReLU only"
)


class RuleSwitch:
    """The projection method that :class:`_SwitchableReLU` applies on its next backward.

    One instance per probe (no global state). ``None`` outside a projection: the backward is
    then the ordinary ReLU gradient.
    """

    def __init__(self) -> None:
        self.method: str | None = None

    @contextmanager
    def use(self, method: str) -> Iterator[None]:
        """Apply ``method`` to every backward through the recorded ReLUs in this block."""
        previous, self.method = self.method, method
        try:
            yield
        finally:
            self.method = previous


class _SwitchableReLU(torch.autograd.Function):
    """ReLU whose backward rule is read from a :class:`RuleSwitch` when the backward runs."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, switch: RuleSwitch, inplace: bool) -> torch.Tensor:
        if inplace:
            ctx.mark_dirty(x)
            out = x.clamp_(min=0)
        else:
            out = x.clamp(min=0)
        ctx.save_for_backward(out)
        ctx.switch = switch
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        (out,) = ctx.saved_tensors
        method = ctx.switch.method
        if method == "deconvnet":
            return grad.clamp(min=0), None, None
        if method == "guided":
            return grad.clamp(min=0) * (out > 0), None, None
        return grad * (out > 0), None, None


@dataclass(frozen=True)
class RectifierCall:
    """One rectifier call seen during a recorded forward pass.

    Attributes
    ----------
    site : str
        Dotted name of the module that was running (``"features.1"``), ``"<model>"`` for a
        call made directly in the top-level ``forward``.
    op : str
        The function called (``"relu"``, ``"relu_"``, ``"gelu"``, ...).
    module_call : bool
        True when the call came from an activation module (``nn.ReLU``), False when it was
        written as a function call in some module's ``forward``.
    replaced : bool
        True when the projection rules apply to it (ReLU), False when it kept its own gradient.
    """

    site: str
    op: str
    module_call: bool
    replaced: bool


@dataclass(frozen=True)
class RectifierCoverage:
    """Which rectifiers the projection rules reach in a model, and which they do not.

    ``str(coverage)`` is a readable report; :attr:`warnings` lists what a user should know
    before trusting a deconvnet or guided-backprop picture of this model.
    """

    replaced: tuple[RectifierCall, ...]
    untouched: tuple[RectifierCall, ...]
    bypassing_modules: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=())

    @property
    def complete(self) -> bool:
        """True when every rectifier seen follows the projection rules."""
        return not self.untouched and not self.bypassing_modules

    def __str__(self) -> str:
        lines = [f"{len(self.replaced)} ReLU call(s) follow the projection rules:"]
        lines += [
            f"  {c.site}: {c.op} ({'module' if c.module_call else 'functional'})"
            for c in self.replaced
        ]
        if self.untouched:
            lines.append(f"{len(self.untouched)} other activation call(s) {_UNTOUCHED_NOTE}:")
            lines += [f"  {c.site}: {c.op}" for c in self.untouched]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


class RectifierRules(TorchFunctionMode):
    """Route every ReLU through :class:`_SwitchableReLU` and record every rectifier call.

    Parameters
    ----------
    switch : RuleSwitch
        Read by the recorded ReLUs at backward time.
    current_site : callable
        Returns ``(module name, call index, is an activation module)`` for the module running
        now, so a call can be attributed to where it happened.
    """

    def __init__(self, switch: RuleSwitch,
                 current_site: Callable[[], tuple[str, int, bool]]) -> None:
        super().__init__()
        self.switch = switch
        self.current_site = current_site
        self.calls: list[tuple[str, int, str, bool, bool]] = []  # site, call, op, module, rule

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        relu = relu_call(func, args, kwargs)
        if relu is not None:
            x, inplace = relu
            site, call, module_call = self.current_site()
            self.calls.append((site, call, "relu_" if inplace else "relu", module_call, True))
            if torch.is_grad_enabled() and isinstance(x, torch.Tensor) and x.requires_grad:
                return _SwitchableReLU.apply(x, self.switch, inplace)
            return func(*args, **kwargs)
        name = _OTHER_ACTIVATIONS.get(func)
        if name is not None:
            site, call, module_call = self.current_site()
            self.calls.append((site, call, name, module_call, False))
        return func(*args, **kwargs)

    def coverage(self, model: nn.Module, reused: set[str] | frozenset[str] = frozenset()
                 ) -> RectifierCoverage:
        """Summarise the calls recorded so far into a :class:`RectifierCoverage`.

        Sites in ``reused`` (modules called more than once per forward) are named with their
        call index, like layers: ``"layer1.0.relu:2"``.
        """
        calls = [RectifierCall(f"{site}:{call}" if site in reused else site, op, module, rule)
                 for site, call, op, module, rule in self.calls]
        replaced = tuple(c for c in calls if c.replaced)
        untouched = tuple(c for c in calls if not c.replaced)
        scripted = [
            name
            for name, module in model.named_modules()
            if isinstance(module, torch.jit.ScriptModule)
        ]
        bypassing = tuple(  # the outermost ones only
            name for name in scripted
            if not any(name.startswith(f"{outer}.") or (not outer and name) for outer in scripted
                       if outer != name)
        )
        warnings: list[str] = []
        if untouched:
            kinds = sorted({c.op for c in untouched})
            warnings.append(
                f"{len(untouched)} activation call(s) of kind {', '.join(kinds)} "
                f"{_UNTOUCHED_NOTE}; "
                "deconvnet and guided projections through them are not Zeiler & Fergus's"
            )
        if bypassing:
            warnings.append(
                f"TorchScript module(s) {', '.join(repr(b or '<model>') for b in bypassing)} "
                "run outside Python dispatch: ReLUs inside them keep their ordinary gradient; "
                "project an eager (non-scripted) copy of the model instead"
            )
        return RectifierCoverage(replaced, untouched, bypassing, tuple(warnings))
