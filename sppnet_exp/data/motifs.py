"""Class-specific fill motifs of the generated objects: the local cue every class has of its own.

Why (issue 9, measured in ``experiments/table2/README.md``): with outline shapes alone, the embedded nets sit at
chance (loss ln 10) for 2-5 epochs, and objects built from parts shared between classes never leave it in a CPU
budget; a net needs at least one local feature per class that correlates with the class from the first step.
Each class here fills its shape with its own periodic motif (bars, checks, dots, rings, ...), drawn in the
object's own unit coordinates, so the motif is stretched, tilted and scaled WITH the object (a deformed part,
seen at the object's scale) and can sit anywhere in the image: what the paper's coarse pyramid bins and
multi-size training are said to be robust to (He et al. 2014, §2.3 and §2.4).

The set is closed under the horizontal flip used in training and in the 10-view test (``diag`` draws ``/`` or
``\\`` at random; no other motif is the mirror image of another), and no motif is another one turned by less
than the ±20° tilt of the objects, so a flip or a tilt never turns one class's cue into another's.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Motif = Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]


def _frac(a: np.ndarray) -> np.ndarray:
    return a - np.floor(a)


def _cell(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Offsets from the nearest cell centre (cells of size 1), in [-0.5, 0.5)."""
    return _frac(u) - 0.5, _frac(v) - 0.5


def _diag(u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    sign = 1.0 if rng.random() < 0.5 else -1.0
    return _frac((u + sign * v) / np.sqrt(2.0)) < 0.45


def _dots(u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    du, dv = _cell(u, v)
    return du**2 + dv**2 < 0.3**2


def _rings(u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    du, dv = _cell(u, v)
    r2 = du**2 + dv**2
    return (r2 > 0.22**2) & (r2 < 0.42**2)


def _plus(u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    du, dv = np.abs(_cell(u, v))
    return ((du < 0.12) & (dv < 0.42)) | ((dv < 0.12) & (du < 0.42))


def _diamonds(u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    a, b = (u + v) / np.sqrt(2.0), (u - v) / np.sqrt(2.0)
    return (np.floor(a) + np.floor(b)) % 2 == 0


def _bricks(u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    row = np.floor(v)
    shifted = u + 0.5 * (row % 2)
    return (_frac(v) < 0.45) & (_frac(shifted) < 0.7)


MOTIFS: dict[str, Motif] = {
    "hbars": lambda u, v, rng: _frac(v) < 0.45,
    "vbars": lambda u, v, rng: _frac(u) < 0.45,
    "checker": lambda u, v, rng: (np.floor(u) + np.floor(v)) % 2 == 0,
    "dots": _dots,
    "diag": _diag,
    "rings": _rings,
    "grid": lambda u, v, rng: (_frac(u) < 0.22) | (_frac(v) < 0.22),
    "plus": _plus,
    "diamonds": _diamonds,
    "bricks": _bricks,
}
MOTIF_NAMES = list(MOTIFS)
PERIODS = (3.5, 5.0)  # motif periods across the object's extent (uniform per instance)


def motif_for(class_index: int) -> str:
    """The motif of class ``class_index`` (classes beyond the motif list reuse it, in order)."""
    return MOTIF_NAMES[class_index % len(MOTIF_NAMES)]


def motif_mask(
    name: str, xs: np.ndarray, ys: np.ndarray, inverse: np.ndarray, centre: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Where motif ``name`` is drawn, at pixel coordinates ``xs``, ``ys`` (broadcastable arrays).

    ``inverse`` maps pixel offsets from ``centre`` back to the object's unit coordinates (about [-1, 1]^2, the
    inverse of the matrix that placed the shape), so the motif deforms with the object. The period (in units of
    the object's extent) and the phase are drawn from ``rng`` per object.
    """
    if name not in MOTIFS:
        raise ValueError(f"unknown motif {name!r}; known: {MOTIF_NAMES}")
    dx, dy = xs - centre[0], ys - centre[1]
    u = inverse[0, 0] * dx + inverse[0, 1] * dy
    v = inverse[1, 0] * dx + inverse[1, 1] * dy
    scale = rng.uniform(*PERIODS) / 2.0  # unit coordinates span 2 across the object
    phase = rng.uniform(0.0, 1.0, 2)
    return MOTIFS[name](u * scale + phase[0], v * scale + phase[1], rng)


def pattern_colour(col: np.ndarray) -> np.ndarray:
    """The motif's colour on an object of colour ``col``: much darker on light objects, much lighter on dark."""
    lum = 0.299 * col[0] + 0.587 * col[1] + 0.114 * col[2]
    return col * 0.3 if lum > 128 else col + (255.0 - col) * 0.7
