"""Render phantom chest radiographs, vectorised over a batch of images.

Everything is drawn in continuous anatomical coordinates (u right, v down, the thorax spans
about [-1, 1]), so one set of parameters gives the same picture at any resolution. Each
image is a map of tissue density D; the detector shows ``1 - exp(-k D)`` (bright = dense),
plus quantum noise. Findings add (or remove) density; their size and place vary per patient
and their contrast is scaled by a per-patient strength U(0.5, 1.2) (+-10% per image) times
``data.phantom_strength``, so some traces are faint on purpose. Arrays are float32 [B, S, S]
unless noted.

The trace of each finding (what a model can learn; lengths in thorax half-widths):

==================  ========================================================================
Atelectasis         thin dense linear band in a lower zone, hemidiaphragm pulled up
Cardiomegaly        heart 1.25-1.5x larger (normal hearts vary 0.88-1.08x)
Effusion            fluid with a meniscus filling the costophrenic angle (one or both sides)
Infiltration        patchy haze (smooth random field) over part of a lung
Mass                large round density (radius 0.08-0.13)
Nodule              1-2 small round densities (radius 0.035-0.055)
Pneumonia           fuzzy, mottled dense patch in a middle/lower zone
Pneumothorax        apical-lateral rim of air without lung markings, visible pleural line
Consolidation       homogeneous dense patch with a sharp edge
Edema               bilateral perihilar haze plus short horizontal (Kerley) lines at the bases
Emphysema           hyperlucent, taller lungs, flat low diaphragm, sparse markings
Fibrosis            fine reticular net in the lower and outer lung, slightly smaller lungs
Pleural_Thickening  dense rim along the lateral chest wall and apex
Hernia              round retrocardiac density above the diaphragm with an air-fluid level
==================  ========================================================================
"""

from __future__ import annotations

import numpy as np

from explorer.data.findings import FINDINGS

F = {name: j for j, name in enumerate(FINDINGS)}
N_WAVES = 6  # sinusoids per random texture field


def _c(a: np.ndarray) -> np.ndarray:
    """[B] -> [B, 1, 1] so per-image parameters broadcast over pixels (scalars pass through)."""
    a = np.asarray(a, np.float32)
    return a if a.ndim == 0 else a[:, None, None]


def _ramp(x: np.ndarray, width: float) -> np.ndarray:
    """Soft step 0 -> 1 around x = 0 over ``width`` (cheaper than a sigmoid)."""
    y = x * np.float32(1.0 / width) if np.ndim(width) == 0 else x / width
    y += 0.5
    return np.clip(y, 0.0, 1.0, out=y)


def _ellipse(u, v, cu, cv, ru, rv, edge, power=2.0):
    """Soft super-ellipse mask (1 inside), edge width ``edge`` in anatomical units."""
    du, dv = (u - _c(cu)) / _c(ru), (v - _c(cv)) / _c(rv)
    if power == 2.0:   # the common case: no pow()
        d = np.sqrt(du * du + dv * dv)
    else:
        d = (np.abs(du) ** power + np.abs(dv) ** power) ** (1.0 / power)
    return _ramp((1.0 - d) * np.minimum(_c(ru), _c(rv)), edge)


def _blob(u, v, cu, cv, r):
    return np.exp(-(((u - _c(cu)) ** 2 + (v - _c(cv)) ** 2) / _c(r) ** 2))


def _field(u, v, waves):
    """Smooth random field ~N(0, 1): sum of sinusoids; ``waves`` [B, N_WAVES, 3] = fu, fv, phase."""
    g = np.zeros_like(u)
    for k in range(waves.shape[1]):
        g += np.cos(u * _c(waves[:, k, 0]) + v * _c(waves[:, k, 1]) + _c(waves[:, k, 2]))
    return g * np.float32(np.sqrt(2.0 / waves.shape[1]))


def _lines(g, width):
    """Thin curvy lines along the zero level set of a random field (vessels, nets)."""
    return np.exp(-((g / width) ** 2))


class _Chest:
    """Coordinates and normal anatomy of a batch; findings then edit ``density``."""

    def __init__(self, p: dict, size: int):
        grid = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
        x, y = grid[None, None, :], grid[None, :, None]
        cos, sin = _c(np.cos(p["theta"])), _c(np.sin(p["theta"]))
        xs, ys = x - _c(p["tx"]), y - _c(p["ty"])
        self.u = (cos * xs + sin * ys) / _c(p["scale"])
        self.v = (-sin * xs + cos * ys) / _c(p["scale"])
        self.p, self.edge = p, max(0.02, 2.0 / size)
        self.density = np.zeros(self.u.shape, np.float32)
        self.markings = np.ones(self.u.shape, np.float32)   # lung-marking visibility

    def lung_geometry(self, side: float, sel=slice(None)):
        """Centre/radii/dome of one lung (side -1: image left, +1: image right), per image."""
        p = self.p
        lw, lh = p["lw"][sel], p["lh"][sel]
        cu = side * 0.4 * lw
        cv = -0.12 + 0.66 * (lh - 1.0)   # the apex stays put; taller lungs reach lower
        dome = p["dome_r" if side < 0 else "dome_l"][sel]
        return cu, cv, 0.33 * lw, 0.66 * lh, dome

    def lung(self, side, sel=slice(None), shrink=0.0):
        u, v = self.u[sel], self.v[sel]
        cu, cv, ru, rv, dome = self.lung_geometry(side, sel)
        body = _ellipse(u, v, cu + side * 0.5 * shrink * ru, cv + 0.4 * shrink * rv,
                        ru * (1 - shrink), rv * (1 - shrink), self.edge, power=2.5)
        under = _c(dome) + 0.18 * ((u - _c(cu)) / _c(ru)) ** 2
        return body * _ramp(under - v, self.edge)


def _heart(u, v, hs, edge):
    """The cardiac silhouette, wider to the image right; ``hs`` [B] scales it."""
    return _ellipse(u, v, 0.07 + 0.08 * hs, 0.24, 0.28 * hs, 0.21 * hs, edge)


def _normal_anatomy(c: _Chest) -> tuple[np.ndarray, np.ndarray]:
    p, u, v, d = c.p, c.u, c.v, c.density
    d += _ellipse(u, v, 0.0, 0.2, p["bw"], 1.2, 0.06)                     # soft tissue
    lungs = c.lung(-1.0) + c.lung(1.0)
    d -= 0.75 * lungs                                                        # air
    medi = _ramp(0.12 + 0.05 * (v + 1) - np.abs(u), c.edge) * _ramp(0.55 - v, 0.1)
    d += 0.35 * medi                                                         # spine, mediastinum
    hs = p["hs"]
    d += 0.5 * _heart(u, v, hs, c.edge)
    cage = _ellipse(u, v, 0.0, -0.05, 0.85 * p["lw"] + 0.05, 0.75, 0.05)
    phase = (v + 0.35 * np.abs(u) - 0.7 * u * u) * 4.5 + _c(p["rib_phase"])
    d += 0.16 * cage * _ramp(np.cos(2 * np.pi * phase) - 0.55, 0.3) * _ramp(0.55 - v, 0.05)
    clav = _ramp(0.035 - np.abs(v - (-0.74 + 0.18 * np.abs(u))), c.edge)
    d += 0.2 * clav * _ramp(0.75 - np.abs(u), 0.05)
    hilum = np.exp(-((np.abs(u) - 0.22) ** 2 + (v + 0.05) ** 2) / 0.3)
    return lungs, hilum


def _vessels(c: _Chest, lungs, hilum):
    g = _field(c.u, c.v, c.p["waves"])
    c.density += 0.22 * _lines(g, 0.3) * lungs * hilum * c.markings


def _side_weights(mode: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """mode 0: image-left lung, 1: image-right, 2: both -> per-image weights of each side."""
    return (mode != 1).astype(np.float32), (mode != 0).astype(np.float32)


def _in_lung(c: _Chest, sel, side, a, b):
    """A point at normalised position (a, b) in [-1, 1]^2 inside the chosen lung."""
    cu, cv, ru, rv, _ = c.lung_geometry(1.0, sel)
    return side * cu + a * 0.6 * ru, cv + b * 0.55 * rv


def _emphysema(c: _Chest, sel, u, v, s, f) -> None:   # taller lungs, low dome: in the params
    c.density[sel] -= s * 0.12 * (c.lung(-1, sel) + c.lung(1, sel))
    c.markings[sel] *= np.clip(1 - 0.6 * s, 0, 1)


def _pneumothorax(c: _Chest, sel, u, v, s, f) -> None:
    side = f["side"][sel] * 2.0 - 1.0
    w = f["Pneumothorax.w"][sel]
    lung = np.where(_c(side) < 0, c.lung(-1, sel), c.lung(1, sel))
    inner = np.where(_c(side) < 0, c.lung(-1, sel, shrink=w), c.lung(1, sel, shrink=w))
    rim = np.clip(lung - inner, 0, 1)
    c.density[sel] -= s * 0.16 * rim
    c.markings[sel] *= 1 - rim
    c.density[sel] += s * 0.8 * lung * inner * (1 - inner)   # the visceral pleural line


def _effusion(c: _Chest, sel, u, v, s, f) -> None:
    wl, wr = _side_weights(f["Effusion.mode"][sel])
    for side, w in ((-1.0, wl), (1.0, wr)):
        cu, _, ru, _, dome = c.lung_geometry(side, sel)
        lateral = np.clip(side * (u - _c(cu)) / _c(ru), -1, 1)           # 1 at chest wall
        surface = _c(dome + 0.18 - f["Effusion.h"][sel]) - 0.2 * np.clip(lateral, 0, 1) ** 2
        fluid = _ramp(v - surface, c.edge) * c.lung(side, sel)
        c.density[sel] += _c(w) * s * 0.7 * fluid


def _atelectasis(c: _Chest, sel, u, v, s, f) -> None:
    side = f["side"][sel] * 2.0 - 1.0
    b = 0.35 + 0.3 * f["Atelectasis.b"][sel]
    cu, cv = _in_lung(c, sel, side, f["Atelectasis.a"][sel], b)
    ang = f["Atelectasis.ang"][sel]
    along = (u - _c(cu)) * _c(np.cos(ang)) + (v - _c(cv)) * _c(np.sin(ang))
    across = -(u - _c(cu)) * _c(np.sin(ang)) + (v - _c(cv)) * _c(np.cos(ang))
    band = _ramp(0.025 - np.abs(across), c.edge) * _ramp(0.2 - np.abs(along), 0.05)
    c.density[sel] += s * 0.45 * band


def _focal(name: str, power: float, dens: float):
    """Mass, Nodule, Consolidation: a dense ellipse in one lung (Nodule: sometimes two)."""
    def draw(c: _Chest, sel, u, v, s, f) -> None:
        side = f[name + ".side"][sel] * 2.0 - 1.0
        cu, cv = _in_lung(c, sel, side, f[name + ".a"][sel], f[name + ".b"][sel])
        r = f[name + ".r"][sel]
        c.density[sel] += s * dens * _ellipse(u, v, cu, cv, r, r * 0.85, c.edge, power)
        if name == "Nodule":   # a second nodule in the other lung for some patients
            two = _c(f["Nodule.two"][sel])
            cu2, cv2 = _in_lung(c, sel, -side, f["Nodule.b"][sel], f["Nodule.a"][sel])
            c.density[sel] += two * s * dens * _ellipse(u, v, cu2, cv2, r, r, c.edge)
    return draw


def _pneumonia(c: _Chest, sel, u, v, s, f) -> None:
    side = f["side"][sel] * 2.0 - 1.0
    b = 0.2 + 0.5 * np.abs(f["Pneumonia.b"][sel])
    cu, cv = _in_lung(c, sel, side, f["Pneumonia.a"][sel], b)
    mottle = 0.6 + 0.4 * _field(u, v, f["waves2"][sel] * 1.5)
    c.density[sel] += s * 0.5 * _blob(u, v, cu, cv, f["Pneumonia.r"][sel]) * mottle


def _infiltration(c: _Chest, sel, u, v, s, f) -> None:
    wl, wr = _side_weights(f["Infiltration.mode"][sel])
    patches = _ramp(_field(u, v, f["waves2"][sel] * 0.35) - 0.2, 1.2)
    lungs = _c(wl) * c.lung(-1, sel) + _c(wr) * c.lung(1, sel)
    c.density[sel] += s * 0.1 * patches * lungs


def _edema(c: _Chest, sel, u, v, s, f) -> None:
    haze = np.exp(-((np.abs(u) - 0.25) ** 2 / 0.09 + (v + 0.0) ** 2 / 0.16))
    lungs = c.lung(-1, sel) + c.lung(1, sel)
    kerley = (_ramp(np.cos(v * 60.0) - 0.8, 0.2) * _ramp(np.abs(u) - 0.5, 0.1)
              * _ramp(v - 0.1, 0.1))   # short horizontal septal lines at the lateral bases
    c.density[sel] += s * (0.12 * haze + 0.15 * kerley) * lungs


def _fibrosis(c: _Chest, sel, u, v, s, f) -> None:
    net = _lines(_field(u, v, f["waves2"][sel] * 2.4), 0.5)
    outer = _ramp(np.abs(u) - 0.35, 0.2) + _ramp(v - 0.1, 0.2)
    lungs = c.lung(-1, sel, shrink=0.05) + c.lung(1, sel, shrink=0.05)
    c.density[sel] += s * 0.3 * net * np.clip(outer, 0, 1) * lungs


def _pleural_thickening(c: _Chest, sel, u, v, s, f) -> None:
    wl, wr = _side_weights(f["Pleural_Thickening.mode"][sel])
    t = f["Pleural_Thickening.t"][sel]
    rim = (_c(wl) * (c.lung(-1, sel) - c.lung(-1, sel, shrink=t))
           + _c(wr) * (c.lung(1, sel) - c.lung(1, sel, shrink=t)))
    c.density[sel] += s * 0.55 * np.clip(rim, 0, 1) * _ramp(np.abs(u) - 0.2, 0.1)


def _hernia(c: _Chest, sel, u, v, s, f) -> None:
    cu, cv = 0.1 + 0.05 * f["Hernia.a"][sel], c.p["dome_l"][sel] - 0.1
    r = f["Hernia.r"][sel]
    sac = _ellipse(u, v, cu, cv, r, r * 0.8, c.edge)
    air = sac * _ramp(_c(cv - 0.1 * r) - v, c.edge)     # gas above a flat fluid level
    c.density[sel] += s * (0.4 * sac - 0.9 * air)


#: Each finding's trace, drawn in this order (Cardiomegaly is in the anatomy: a larger heart).
_TRACES = (
    ("Emphysema", _emphysema), ("Pneumothorax", _pneumothorax), ("Effusion", _effusion),
    ("Atelectasis", _atelectasis), ("Mass", _focal("Mass", 2.0, 0.55)),
    ("Nodule", _focal("Nodule", 2.0, 0.7)), ("Consolidation", _focal("Consolidation", 3.0, 0.4)),
    ("Pneumonia", _pneumonia), ("Infiltration", _infiltration), ("Edema", _edema),
    ("Fibrosis", _fibrosis), ("Pleural_Thickening", _pleural_thickening), ("Hernia", _hernia),
)


def _findings(c: _Chest, labels: np.ndarray, f: dict, strength: float) -> None:
    """Add the trace of every present finding; ``f`` holds per-image finding parameters."""
    for name, draw in _TRACES:
        sel = np.flatnonzero(labels[:, F[name]])
        if sel.size:
            draw(c, sel, c.u[sel], c.v[sel], _c(f[name + ".s"][sel] * strength), f)


def render(params: dict, finding_params: dict, labels: np.ndarray, size: int,
           strength: float, rng: np.random.Generator) -> np.ndarray:
    """Draw a batch: ``params``, ``finding_params`` hold per-image arrays [B, ...]; labels
    [B, 14]. Returns uint8 [B, S, S]."""
    c = _Chest(params, size)
    lungs, hilum = _normal_anatomy(c)
    _findings(c, labels, finding_params, strength)
    _vessels(c, lungs, hilum)
    p = params
    img = _c(p["gain"]) * (1 - np.exp(-_c(p["k"]) * np.maximum(c.density, 0))) + _c(p["offset"])
    img += rng.standard_normal(img.shape, dtype=np.float32) * _c(p["noise"])
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
