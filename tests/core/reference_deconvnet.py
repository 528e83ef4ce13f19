"""A literal, loop-by-loop deconvnet in NumPy (Zeiler & Fergus 2014, Sec. 2.1), for tests.

Forward: convolve, rectify, max-pool recording the switch (argmax) of every window.
Backward from one seeded activation: unpool by *adding* each value at its window's switch
(overlapping windows that share a switch add up), rectify, filter with the transposed filters
(no bias). ``rule`` also gives guided backprop and the plain gradient for comparison.
"""

from __future__ import annotations

import numpy as np


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray, pad: int) -> np.ndarray:
    c_out, _c_in, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    h = xp.shape[1] - k + 1
    wd = xp.shape[2] - k + 1
    out = np.zeros((c_out, h, wd))
    for o in range(c_out):
        for i in range(h):
            for j in range(wd):
                out[o, i, j] = np.sum(xp[:, i:i + k, j:j + k] * w[o]) + b[o]
    return out


def conv2d_transposed(g: np.ndarray, w: np.ndarray, pad: int, size: tuple[int, int]) -> np.ndarray:
    """Filter with the transposed filters: every output value spreads its filter back."""
    c_out, c_in, k, _ = w.shape
    out = np.zeros((c_in, size[0] + 2 * pad, size[1] + 2 * pad))
    for o in range(c_out):
        for i in range(g.shape[1]):
            for j in range(g.shape[2]):
                out[:, i:i + k, j:j + k] += g[o, i, j] * w[o]
    return out[:, pad:pad + size[0], pad:pad + size[1]]


def maxpool_switches(x: np.ndarray, k: int, s: int) -> tuple[np.ndarray, np.ndarray]:
    c, h, w = x.shape
    ho, wo = (h - k) // s + 1, (w - k) // s + 1
    out = np.zeros((c, ho, wo))
    switches = np.zeros((c, ho, wo, 2), dtype=int)
    for ch in range(c):
        for i in range(ho):
            for j in range(wo):
                window = x[ch, i * s:i * s + k, j * s:j * s + k]
                a, b = np.unravel_index(np.argmax(window), window.shape)
                out[ch, i, j] = window[a, b]
                switches[ch, i, j] = (i * s + a, j * s + b)
    return out, switches


def unpool(g: np.ndarray, switches: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    out = np.zeros((g.shape[0], *size))
    for ch in range(g.shape[0]):
        for i in range(g.shape[1]):
            for j in range(g.shape[2]):
                a, b = switches[ch, i, j]
                out[ch, a, b] += g[ch, i, j]  # shared switches add up
    return out


def rectify(g: np.ndarray, forward_out: np.ndarray, rule: str) -> np.ndarray:
    if rule == "deconvnet":
        return np.maximum(g, 0)
    if rule == "guided":
        return np.maximum(g, 0) * (forward_out > 0)
    return g * (forward_out > 0)


def project_conv_relu_pool(
    x: np.ndarray, params: list[tuple[np.ndarray, np.ndarray]], pool: tuple[int, int],
    layer_index: int, unit: int, rule: str, position: str | tuple[int, int] = "max",
) -> np.ndarray:
    """Project one unit of a ``[conv, relu, pool] * len(params)`` stack back to pixels.

    ``layer_index`` counts the stack's layers from 0 (conv1=0, relu1=1, pool1=2, conv2=3, ...).
    """
    k, s = pool
    tape = []  # (kind, data) per forward layer
    a = x.astype(np.float64)
    outputs = []
    for w, b in params:
        size = a.shape[1:]
        a = conv2d(a, w, b, pad=w.shape[2] // 2)
        tape.append(("conv", (w, size)))
        outputs.append(a)
        a = np.maximum(a, 0)
        tape.append(("relu", a))
        outputs.append(a)
        size = a.shape[1:]
        a, switches = maxpool_switches(a, k, s)
        tape.append(("pool", (switches, size)))
        outputs.append(a)
    act = outputs[layer_index]
    seed = np.zeros_like(act)
    if position == "max":
        where = np.unravel_index(np.argmax(act[unit]), act[unit].shape)
        seed[(unit, *where)] = act[(unit, *where)]
    elif position == "all":
        seed[unit] = act[unit]
    else:
        seed[(unit, *position)] = act[(unit, *position)]
    g = seed
    for kind, data in reversed(tape[: layer_index + 1]):
        if kind == "pool":
            switches, size = data
            g = unpool(g, switches, size)
        elif kind == "relu":
            g = rectify(g, data, rule)
        else:
            w, size = data
            g = conv2d_transposed(g, w, pad=w.shape[2] // 2, size=size)
    return g
