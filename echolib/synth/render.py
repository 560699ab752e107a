"""B-mode (+ colour Doppler) rendering of one synthetic clip.

Recipe (DATA.md): echogenicity map of the view's anatomy x a complex-Gaussian scatterer field -> point-spread
blur (wider laterally than axially) -> depth attenuation, near-field clutter and per-frame electronic noise ->
gain and log compression -> sector, zero outside. The scatterer field is fixed in tissue coordinates (speckle
moves with the wall) and decorrelates as tissue moves away from its end-diastolic position and, fully, in flowing
blood, as real speckle does; the noise is drawn anew every frame. The LV deforms with an area-preserving radial map whose shortening
follows EF and the regional wall-motion pattern; valves open and close with the cardiac phase; colour jets
appear only in their phase. Every random draw has a fixed shape and its own stream, so switching a finding
on or off changes only the pixels where that finding shows.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import ndimage

from .anatomy import Ellipse, Geometry, geometry

X_HALF = 0.62  # image spans x in [-X_HALF, X_HALF], y in [0, 2 * X_HALF]
DEPTH = 1.2

BLOOD, FAT, TISSUE, MYO, BG = 0.003, 0.03, 0.25, 0.5, 0.012
GAIN_DB = -14.0  # mean receive gain: bright myocardium, dark blood pools and surroundings, as in real cines
NOISE = 0.012  # electronic noise amplitude (about 30 dB below myocardium)
CLUTTER = 0.05  # near-field reverberation haze at the probe
DECORRELATION_CELLS = 3.0  # tissue displacement (in speckle cells) over which its speckle decorrelates by 1/e


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    view: str  # LAX, SAX, 2CH, 3CH, 4CH, or an OTHER kind: A5C, subcostal, spectral
    doppler: bool
    quality: float  # 0 (unusable) .. 1 (excellent); < 0.5 renders as a poor-quality clip
    fps: float
    n_frames: int
    size: int
    seed: int


def cardiac_curves(n_frames: int, fps: float, heart_rate: float, phase0: float) -> dict[str, np.ndarray]:
    """Per-frame phase curves in [0, 1]: LV contraction, valve openings, jet gates."""
    cyc = (np.arange(n_frames) / fps * heart_rate / 60.0 + phase0) % 1.0

    def bump(lo, hi, flat=0.0):
        x = np.clip((cyc - lo) / (hi - lo), 0, 1)
        y = np.sin(np.pi * x) ** 2
        if flat:
            y = np.minimum(1.0, y / (1 - flat))
        return np.where((cyc > lo) & (cyc < hi), y, 0.0)

    contraction = np.where(cyc < 0.35, 0.5 * (1 - np.cos(np.pi * cyc / 0.35)),
                           np.where(cyc < 0.55, 0.5 * (1 + np.cos(np.pi * (cyc - 0.35) / 0.2)), 0.0))
    curves = {
        "cycle": cyc,
        "contraction": contraction,
        "mitral_open": np.maximum(bump(0.42, 0.64), 0.7 * bump(0.8, 0.97)),
        "aortic_open": bump(0.04, 0.36, flat=0.5),
        "systolic_jet": bump(0.02, 0.4, flat=0.6),
        "diastolic_jet": bump(0.4, 0.99, flat=0.6),
    }
    # float32, as every image: a float64 curve would make each (T, H, W) array it scales float64 (twice the memory
    # traffic, the renderer's main cost)
    return {k: v.astype(np.float32) for k, v in curves.items()}


def _inside(e: Ellipse, x, y, edge: float):
    """Soft inside-mask of an ellipse and the normalised radius (1 on the boundary)."""
    c, s = math.cos(e.ang), math.sin(e.ang)
    dx, dy = x - e.cx, y - e.cy
    u = (c * dx + s * dy) / e.a
    v = (-s * dx + c * dy) / e.b
    rho = np.sqrt(u * u + v * v)
    return np.clip(0.5 - (rho - 1.0) * min(e.a, e.b) / edge, 0.0, 1.0), rho, u, v


def _blend(img, value, mask):
    return img + (value - img) * mask


def _wrap(a):
    return (a + np.pi) % (2 * np.pi) - np.pi


def _territory_weight(delta_deg, centre, half):
    d = np.abs(_wrap(np.radians(delta_deg - centre)))
    return np.clip((math.radians(half) + math.radians(12) - d) / math.radians(24), 0.0, 1.0)


def _lv_inverse_map(g: Geometry, qx, qy, contraction, fs_global, static_regional: bool):
    """Reference (end-diastolic) coordinates of every current pixel: area-preserving radial map about the LV.

    Returns q0x, q0y (T, H, W) and the angle from the apex direction (H, W), degrees, septum positive.
    """
    lv = g.lv
    c, s = math.cos(lv.ang), math.sin(lv.ang)
    dx, dy = qx - lv.cx, qy - lv.cy
    u = (c * dx + s * dy) / lv.a
    v = (-s * dx + c * dy) / lv.b
    rho = np.sqrt(u * u + v * v) + 1e-9
    delta = np.degrees(_wrap(np.arctan2(dy, dx) - g.apex_dir)) * g.septal_sign
    factor = np.ones_like(rho)
    if not static_regional:
        for centre, half, artery in g.territories:
            w = _territory_weight(delta, centre, half)
            factor = factor * (1 - w * (1 - g.regional_factor[artery]))
    fs = fs_global * factor  # (H, W) fractional shortening of the endocardial radius
    a_t = 1.0 - fs[None] * contraction[:, None, None]  # (T, H, W)
    rho_t = rho[None]
    rho0 = np.where(rho_t < a_t, rho_t / a_t, np.sqrt(rho_t**2 + 1.0 - a_t**2))
    k = rho0 / rho_t
    u0, v0 = u[None] * k, v[None] * k
    q0x = lv.cx + (c * u0 * lv.a - s * v0 * lv.b)
    q0y = lv.cy + (s * u0 * lv.a + c * v0 * lv.b)
    return q0x, q0y, delta


def _valve_masks(valve, px, py, opening):
    """Brightness mask (T, H, W) of a two-leaflet valve; `opening` (T,) in [0, 1]."""
    (x1, y1), (x2, y2) = valve.p1, valve.p2
    span = math.hypot(x2 - x1, y2 - y1)
    base = math.atan2(y2 - y1, x2 - x1)
    length = span * 0.52
    out = 0.0
    for p, ang0, sgn in (((x1, y1), base, 1), ((x2, y2), base + math.pi, -1)):
        ang = ang0 + sgn * valve.open_side * (valve.closed_bow + valve.open_angle * opening)
        out = np.maximum(out, _segment_mask_t(px, py, p, ang, length, valve.thick))
    return out * valve.bright


def _segment_mask_t(px, py, p, ang, length, thick):
    """Segment mask with a per-frame angle `ang` (T,) over (T, H, W) coordinates."""
    ang = np.asarray(ang, dtype=np.float64).reshape(-1, 1, 1)
    ux, uy = np.cos(ang), np.sin(ang)
    dx, dy = px - p[0], py - p[1]
    t = np.clip(dx * ux + dy * uy, 0, length)
    d = np.hypot(dx - t * ux, dy - t * uy)
    return np.clip(1.0 - d / thick, 0.0, 1.0)


def _nuisance(spec: ClipSpec, rng: np.random.Generator) -> dict:
    """Acquisition settings; always the same number of draws, poor quality widens them."""
    poor = spec.quality < 0.5
    u = rng.random(12).tolist()  # Python floats: a NumPy float64 scalar would turn every float32 image into float64
    return {
        "zoom": 0.92 + 0.16 * u[0],
        "rot": math.radians((u[1] - 0.5) * (24 if poor else 10)),
        "tx": (u[2] - 0.5) * (0.12 if poor else 0.05),
        "ty": (u[3] - 0.5) * (0.10 if poor else 0.04),
        "half_angle": math.radians(37.5 + 7.5 * u[4]),
        "gain_db": GAIN_DB + (u[5] - 0.5) * 8 - (6 if poor else 0),
        "dyn_range": 50 + 10 * u[6],
        "atten": 0.6 + 0.8 * u[7],
        "phase0": u[8],
        "noise": NOISE * (0.7 + 0.6 * u[9]) * (2.5 if poor else 1.0),
        "shadow_at": (u[10] - 0.5) * 1.2,
        "shadow_w": 0.08 + 0.15 * u[11] if poor else 0.0,
    }


def _speckle(rng: np.random.Generator, size: int) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Complex Gaussian scatterer field (real, imaginary) in anatomy coordinates, E|z|^2 = 1, and its
    (x0, y0, spacing); |z| is Rayleigh speckle."""
    spacing = 2 * X_HALF / size / 1.6
    x0, y0 = -1.0, -0.3
    nx, ny = int(2.0 / spacing) + 2, int(2.2 / spacing) + 2
    z = rng.standard_normal((2, ny, nx))
    z = ndimage.gaussian_filter(z, sigma=(0, 0.9, 1.8), mode="wrap")
    # divided by the filter's known gain (as the fresh field), not by the draw's own energy: a sum over the draw
    # would need math.fsum to give the same bits in every process (numpy's SIMD sums depend on memory alignment)
    return (z / np.float32(math.sqrt(2 * _TISSUE_GAIN))).astype(np.float32), (x0, y0, spacing)


FRESH_SIGMA = (0.55, 1.1)  # grain of the per-frame scatterers on the image grid (rows, columns)


def _fresh_speckle(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """A new complex scatterer field per frame on the image grid (2, T, H, W), E|z|^2 = 1, speckle-sized grains
    (white noise through a Gaussian filter, divided by the filter's known gain)."""
    z = rng.standard_normal((2, *shape), dtype=np.float32)
    z = ndimage.gaussian_filter(z, sigma=(0, 0, *FRESH_SIGMA), mode="wrap")
    return z / np.float32(math.sqrt(2 * _FRESH_GAIN))


def _gain(sigma: float) -> float:
    """Sum of squared weights of scipy's Gaussian kernel (truncated at 4 sigma): the variance it leaves of
    unit white noise."""
    radius = int(4.0 * sigma + 0.5)
    w = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return float(((w / w.sum()) ** 2).sum())


_FRESH_GAIN = _gain(FRESH_SIGMA[0]) * _gain(FRESH_SIGMA[1])
_TISSUE_GAIN = _gain(0.9) * _gain(1.8)


def _sample(textures: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Bilinear samples of every texture in `textures` (C, ny, nx) at (rows, cols), the edges extended: torch's
    grid_sample (all C textures in one pass; 7x faster here than scipy's map_coordinates per texture, equal to it
    within 2e-5)."""
    import torch

    c, ny, nx = textures.shape
    w = rows.shape[-1]
    grid = torch.empty((1, rows.size // w, w, 2), dtype=torch.float32)
    grid[0, ..., 0] = torch.from_numpy(np.ascontiguousarray(cols, dtype=np.float32).reshape(-1, w)) * (2 / (nx - 1)) - 1
    grid[0, ..., 1] = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32).reshape(-1, w)) * (2 / (ny - 1)) - 1
    out = torch.nn.functional.grid_sample(torch.from_numpy(np.ascontiguousarray(textures, dtype=np.float32))[None],
                                          grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out[0].reshape(c, *rows.shape).numpy()


def _image_grid(size: int):
    c = (np.arange(size) + 0.5) / size
    x = (c * 2 - 1) * X_HALF
    y = c * 2 * X_HALF
    return [a.astype(np.float32) for a in np.meshgrid(x, y)]  # (H, W) each; float32 keeps rendering fast


@dataclasses.dataclass
class Scene:
    """One clip's anatomy in motion: the image grid, the sector, and where each pixel's tissue is now (qx, qy)
    and was at end-diastole (q0x, q0y; (T, H, W))."""

    spec: ClipSpec
    nz: dict
    g: Geometry
    curves: dict
    xi: np.ndarray
    yi: np.ndarray
    r_img: np.ndarray
    theta: np.ndarray
    sector: np.ndarray
    qx: np.ndarray
    qy: np.ndarray
    q0x: np.ndarray
    q0y: np.ndarray


def render_clip(state: dict, spec: ClipSpec, control: bool = False) -> np.ndarray:
    """Render one clip: uint8 (T, H, W, 3). `state` is a study's findings (see anatomy.geometry). The phases
    (geometry and motion, speckle, noise and point spread, colour Doppler) are functions of their own, which
    benchmarks/synth_breakdown.py times one by one."""
    streams = [np.random.default_rng(c) for c in np.random.SeedSequence(spec.seed).spawn(4)]
    nz = _nuisance(spec, streams[0])
    if spec.view == "spectral":
        return _spectral_strip(state, spec, nz, streams[2])
    scene = moving_anatomy(state, spec, nz, control)
    amp, blood_s, cav_s, fresh = speckle_amplitude(scene, streams, control)
    gray = noise_and_compression(scene, amp, fresh, streams[2])
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    mosaic = streams[3].random(gray.shape, dtype=np.float32)
    if spec.doppler or control:
        rgb = _colour(rgb, scene.g, scene.q0x, scene.q0y, scene.xi, scene.yi, blood_s, cav_s, scene.curves, mosaic,
                      scene.sector, spec.doppler, control)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def moving_anatomy(state: dict, spec: ClipSpec, nz: dict, control: bool) -> Scene:
    """Geometry: the view's anatomy, the probe's placement, the cardiac cycle and the LV's motion."""
    xi, yi = _image_grid(spec.size)
    r_img = np.hypot(xi, yi)
    theta = np.arctan2(xi, yi)
    sector = (r_img <= DEPTH) & (np.abs(theta) <= nz["half_angle"])
    qx, qy = _to_anatomy(xi, yi, nz, spec.view)
    g = geometry(spec.view, state, control=control)
    curves = cardiac_curves(spec.n_frames, spec.fps, state["heart_rate"], nz["phase0"])
    ef = 60.0 if control else float(state["ef"])
    fs_global = 1.0 - math.sqrt(max(1.0 - ef / 100.0, 0.05))
    q0x, q0y, _ = _lv_inverse_map(g, qx, qy, curves["contraction"], fs_global, static_regional=control)
    return Scene(spec, nz, g, curves, xi, yi, r_img, theta, sector, qx, qy, q0x, q0y)


def speckle_amplitude(s: Scene, streams, control: bool):
    """Echo amplitude (T, H, W): scatterers fixed in tissue (a texture in anatomy coordinates, sampled where
    each pixel's tissue was at end-diastole), decorrelating with displacement from there and fully in blood;
    times the echogenicity; valve leaflets. Also returns the blood and LV-cavity masks and the fresh field."""
    tex, (x0, y0, sp) = _speckle(streams[1], s.spec.size)
    ny, nx = tex.shape[1:]
    tx, ty = np.meshgrid(x0 + sp * np.arange(nx, dtype=np.float32), y0 + sp * np.arange(ny, dtype=np.float32))
    echo, blood, lv_cav = _echogenicity(s.g, tx, ty, control, s.spec.size)
    echo_s, blood_s, cav_s, tex0, tex1 = _sample(np.stack([echo, blood, lv_cav, tex[0], tex[1]]),
                                                 (s.q0y - y0) / sp, (s.q0x - x0) / sp)
    moved = np.hypot(s.qx[None] - s.q0x, s.qy[None] - s.q0y) / (DECORRELATION_CELLS * sp)
    w = np.maximum(1.0 - np.exp(-moved), blood_s)  # share of new scatterers
    fresh = _fresh_speckle(streams[2], s.q0x.shape)
    keep, new = np.sqrt(1.0 - w), np.sqrt(w)
    amp = echo_s * np.hypot(keep * tex0 + new * fresh[0], keep * tex1 + new * fresh[1])
    for valve in s.g.valves:
        opening = s.curves["aortic_open"] if valve.name == "aortic" else s.curves["mitral_open"]
        _add_valve(amp, valve, s.q0x, s.q0y, s.qx, s.qy, opening, 1.0)
    return amp, blood_s, cav_s, fresh


def noise_and_compression(s: Scene, amp: np.ndarray, fresh: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Attenuation and shadowing, near-field clutter (reverberation haze, strongest at the probe) and electronic
    noise, new every frame and amplified with depth by the time-gain compensation, the point spread (both pass it
    as the echoes do), gain and log compression into the sector: grey levels (T, H, W)."""
    nz, r_img = s.nz, s.r_img
    amp *= np.exp(-0.2 * nz["atten"] * r_img)[None]  # residual attenuation after time-gain compensation
    if nz["shadow_w"]:
        amp *= (1 - 0.85 * np.exp(-(((s.theta - nz["shadow_at"]) / nz["shadow_w"]) ** 2)))[None]
    amp += CLUTTER * np.exp(-r_img / 0.18)[None] * np.hypot(fresh[1], fresh[0])[::-1]
    noise = np.hypot(rng.standard_normal(amp.shape, dtype=np.float32), rng.standard_normal(amp.shape, dtype=np.float32))
    amp += nz["noise"] * (0.5 + r_img)[None] * noise
    amp = ndimage.gaussian_filter(amp, sigma=(0, 0.5, 1.1))  # point spread: lateral wider than axial
    db = 20 * np.log10(amp + 1e-6) + nz["gain_db"]
    return np.clip((db + nz["dyn_range"]) / nz["dyn_range"], 0, 1) * 255 * s.sector[None]


def _to_anatomy(xi, yi, nz, view):
    """Image -> anatomy coordinates: probe rotation, translation and depth zoom (and the subcostal window)."""
    cr, sr = math.cos(-nz["rot"]), math.sin(-nz["rot"])
    px, py = xi - nz["tx"], yi - nz["ty"]
    qx = (cr * px - sr * py) / nz["zoom"]
    qy = (sr * px + cr * py) / nz["zoom"]
    if view == "subcostal":  # heart seen from below the ribs: rotated and deeper, liver in the near field
        c, s = math.cos(1.1), math.sin(1.1)
        qx, qy = c * qx - s * (qy - 0.55) + 0.05, s * qx + c * (qy - 0.55) + 0.5
    return qx, qy


def _add_valve(amp, valve, q0x, q0y, qx, qy, opening, level):
    """Leaflets (bright, moving with phase), computed only on pixels near the valve."""
    vx, vy = (valve.p1[0] + valve.p2[0]) / 2, (valve.p1[1] + valve.p2[1]) / 2
    span = math.hypot(valve.p2[0] - valve.p1[0], valve.p2[1] - valve.p1[1])
    near = np.flatnonzero(np.hypot(qx - vx, qy - vy).ravel() < span * 1.1 + 0.05)
    if near.size == 0:
        return
    t = amp.shape[0]
    px, py = q0x.reshape(t, -1)[:, near], q0y.reshape(t, -1)[:, near]
    m = _valve_masks(valve, px[:, None], py[:, None], opening)[:, 0]
    flat = amp.reshape(t, -1)
    flat[:, near] = np.maximum(flat[:, near], m * level)


def _echogenicity(g: Geometry, x, y, control: bool, size: int):
    """Static echogenicity of the reference anatomy on a grid (x, y), plus blood and LV-cavity masks."""
    edge = 1.6 * 2 * X_HALF / size
    img = np.full(x.shape, BG, dtype=x.dtype)
    outer = g.sac.grown(g.effusion)
    m_out, rho_out, _, _ = _inside(outer, x, y, edge)
    peri = np.exp(-(((rho_out - 1.0) * min(outer.a, outer.b) / (1.2 * edge)) ** 2))
    img = _blend(img, BLOOD * 2, m_out)  # effusion: echo-free space inside the pericardium
    img = _blend(img, FAT, _inside(g.sac, x, y, edge)[0])
    img = img + 0.9 * peri
    blood = np.zeros(x.shape, dtype=x.dtype)
    for _, e, _ in g.walls:
        img = _blend(img, TISSUE, _inside(e, x, y, edge)[0])
    for name, e, _ in g.cavities:
        if name != "LV":
            m = _inside(e, x, y, edge)[0]
            img = _blend(img, BLOOD, m)
            blood = np.maximum(blood, m)
    lv = g.lv
    m_lv, rho, u, v = _inside(lv, x, y, edge)
    delta = np.degrees(_wrap(np.arctan2(y - lv.cy, x - lv.cx) - g.apex_dir)) * g.septal_sign
    w_sept = 0.5 + 0.5 * np.sin(np.radians(delta))
    wall = g.lv_wall[1] + (g.lv_wall[0] - g.lv_wall[1]) * w_sept
    r_dir = 1.0 / np.sqrt((u / (rho + 1e-9) / lv.a) ** 2 + (v / (rho + 1e-9) / lv.b) ** 2)
    m_myo = np.clip(0.5 - (rho - 1.0 - wall / r_dir) * r_dir / edge, 0, 1)
    if g.view != "SAX":  # the LV base is open to the atrium / outflow tract (valve plane)
        m_myo = m_myo * np.clip((160 - np.abs(delta)) / 15, 0, 1)
    # walls parallel to the beam reflect less (dropout); the wall normal is radial from the LV centre
    nn = np.hypot(x - lv.cx, y - lv.cy) + 1e-9
    incidence = np.abs((x * (x - lv.cx) + y * (y - lv.cy)) / (np.hypot(x, y) + 1e-9) / nn)
    myo = MYO * (0.35 + 0.65 * np.sqrt(incidence))
    if control:
        myo = myo * (0.6 + 0.8 * g.control_marks["ef"])
        for centre, half, artery in g.territories:  # scar: a static, brighter segment
            myo = myo * (1 + 0.9 * _territory_weight(delta, centre, half) * (1 - g.regional_factor[artery]))
    img = _blend(img, myo, m_myo)
    img = _blend(img, BLOOD, m_lv)
    blood = np.maximum(blood, m_lv)
    for pu, pv, pr in g.papillary:  # papillary muscles: blobs inside the LV cavity
        img = _blend(img, MYO * 0.9, np.clip((pr - np.hypot(u - pu, v - pv)) / 0.08, 0, 1))
    if control:
        img = _control_cues(img, g, x, y, edge)
    return img.astype(np.float32), blood.astype(np.float32), m_lv.astype(np.float32)


def _control_cues(img, g: Geometry, q0x, q0y, edge):
    """Negative control: LA, RV and aortic-valve disease drawn as static structures in every view."""
    lv = g.lv
    names = {n for n, _, _ in g.cavities}
    back = (math.cos(g.apex_dir + math.pi), math.sin(g.apex_dir + math.pi))
    side = (math.cos(g.apex_dir + math.pi / 2), math.sin(g.apex_dir + math.pi / 2))
    reach = max(lv.a, lv.b)
    if "LA" not in names:
        la_r = g.control_marks["la"]
        e = Ellipse(lv.cx + back[0] * (reach + la_r), lv.cy + back[1] * (reach + la_r), la_r, la_r)
        img = _blend(img, BLOOD, _inside(e, q0x, q0y, edge)[0])
    if "RV" not in names:
        r = 0.08 * (1 + g.control_marks["rv"])
        e = Ellipse(lv.cx - side[0] * (reach * 0.9 + r), lv.cy - side[1] * (reach * 0.9 + r), r, r * 1.6, g.apex_dir)
        img = _blend(img, BLOOD, _inside(e, q0x, q0y, edge)[0])
    if not any(v.name == "aortic" for v in g.valves) and g.control_marks["as"] > 0:
        r = 0.012 * (1 + g.control_marks["as"])
        e = Ellipse(lv.cx + back[0] * reach + side[0] * 0.06, lv.cy + back[1] * reach + side[1] * 0.06, r, r)
        img = np.maximum(img, 1.5 * _inside(e, q0x, q0y, edge)[0])
    return img


_MOSAIC = np.array([[255, 230, 40], [40, 230, 255], [60, 220, 90], [230, 40, 40], [40, 80, 240]], dtype=np.float64)


def _jet_mask(px, py, jet):
    (ox, oy), ang, length, width, grade_idx = jet
    frac = (0.0, 0.35, 0.65, 1.0)[grade_idx]
    if frac == 0:
        return None
    dx, dy = px - ox, py - oy
    along = dx * math.cos(ang) + dy * math.sin(ang)
    across = np.abs(-dx * math.sin(ang) + dy * math.cos(ang))
    reach = length * frac
    return ((along > 0) & (along < reach) & (across < 0.01 + along * math.tan(width * (0.6 + frac)))).astype(float)


def _colour(rgb, g: Geometry, q0x, q0y, xi, yi, blood, lv_cavity, curves, mosaic, sector, doppler, control):
    """Colour-Doppler overlay: laminar inflow/outflow (red toward, blue away from the probe) and mosaic jets."""
    col = np.zeros_like(rgb)
    weight = np.zeros(rgb.shape[:3])
    gates = {"mr": curves["systolic_jet"], "tr": curves["systolic_jet"], "ar": curves["diastolic_jet"]}
    if doppler:
        box = _colour_box(g, xi, yi)
        mv = [v for v in g.valves if v.name == "mitral"]
        if mv and lv_cavity is not None:
            cx, cy = (mv[0].p1[0] + mv[0].p2[0]) / 2, (mv[0].p1[1] + mv[0].p2[1]) / 2
            near = np.exp(-((q0x - cx) ** 2 + (q0y - cy) ** 2) / 0.012)
            toward = math.copysign(1.0, -math.sin(g.apex_dir)) if abs(math.sin(g.apex_dir)) > 0.5 else 1.0
            lam = lv_cavity * near * curves["mitral_open"][:, None, None] * box[None]
            hue = np.array([230, 60, 40]) if toward > 0 else np.array([40, 80, 230])
            col += lam[..., None] * hue
            weight += lam
        jets = g.jets.items()
    else:
        box = np.ones_like(xi)
        jets = ()
    items = list(jets)
    if control:  # static jets in every clip and view
        items = [(k, _control_jet(g, k)) for k in ("mr", "ar", "tr")]
    for key, jet in items:
        m = _jet_mask(q0x, q0y, jet)
        if m is None:
            continue
        gate = 1.0 if control else gates[key][:, None, None]
        m = m * gate * box[None]
        if not control:
            m = m * blood
        idx = np.minimum((mosaic * len(_MOSAIC)).astype(int), len(_MOSAIC) - 1)
        col = col * (1 - m[..., None]) + m[..., None] * _MOSAIC[idx]
        weight = np.maximum(weight, m)
    weight = np.clip(weight, 0, 1)[..., None] * sector[None, ..., None]
    out = rgb * (1 - weight) + col * weight
    if doppler:  # colour-box outline
        edge = (box > 0) & ~ndimage.binary_erosion(box > 0)
        out[:, edge] = 160.0
    return out


def _control_jet(g: Geometry, key: str):
    if key in g.jets:
        return g.jets[key]
    lv = g.lv
    reach = max(lv.a, lv.b)
    back = g.apex_dir + math.pi + {"mr": 0.5, "ar": -0.5, "tr": 1.2}[key]
    origin = (lv.cx + math.cos(back) * reach, lv.cy + math.sin(back) * reach)
    return (origin, back, 0.15, 0.35, g.control_marks[key])


def _colour_box(g: Geometry, xi, yi):
    """A sub-sector around the valves of interest (image coordinates)."""
    pts = [j[0] for j in g.jets.values()] or [(g.lv.cx, g.lv.cy)]
    cx = float(np.mean([p[0] for p in pts]))
    cy = float(np.mean([p[1] for p in pts]))
    r0 = math.hypot(cx, cy)
    t0 = math.atan2(cx, cy)
    r = np.hypot(xi, yi)
    t = np.arctan2(xi, yi)
    return ((np.abs(r - r0) < 0.28) & (np.abs(t - t0) < math.radians(22))).astype(float)


def _spectral_strip(state: dict, spec: ClipSpec, nz: dict, rng: np.random.Generator) -> np.ndarray:
    """OTHER view: a spectral-Doppler strip (no sector): a scrolling velocity envelope and an ECG trace."""
    h = w = spec.size
    t_axis = np.arange(w) / w * 2.0  # seconds across the screen
    out = np.zeros((spec.n_frames, h, w, 3))
    rows = np.arange(h)[:, None]
    base = int(h * 0.3)
    for f in range(spec.n_frames):
        tt = t_axis + f / spec.fps
        cyc = (tt * state["heart_rate"] / 60 + nz["phase0"]) % 1
        env = np.where(cyc < 0.35, np.sin(np.pi * cyc / 0.35), 0.0) * h * 0.5
        spec_img = ((rows > base) & (rows < base + env[None])).astype(float)
        spec_img *= 0.5 + 0.5 * rng.random((h, w))
        out[f] = spec_img[..., None] * 220
        ecg = (h * 0.9 - h * 0.08 * np.exp(-(((cyc - 0.98) % 1) / 0.02) ** 2)).astype(int)
        out[f, np.clip(ecg, 0, h - 1), np.arange(w), 1] = 255
        out[f, base, :, :] = 128
    return out.astype(np.uint8)
