"""View geometry of the synthetic heart: chambers as ellipses, valves as hinged leaflets, wall territories.

Coordinates: the probe at (0, 0), x lateral (right positive), y depth (down positive); 1 unit = UNIT_MM.
Only findings that DATA.md says a view shows may change that view's geometry; `geometry()` is the single place
where findings enter, which the per-finding visibility tests check pixel by pixel.
"""

from __future__ import annotations

import dataclasses
import math

from ..vocab import VIEWS

UNIT_MM = 170.0


@dataclasses.dataclass(frozen=True)
class Ellipse:
    cx: float
    cy: float
    a: float  # half-axis along the ellipse's own u axis (direction `ang`)
    b: float  # half-axis along v (perpendicular, +90 degrees)
    ang: float = 0.0  # radians

    def scaled(self, k: float, kb: float | None = None) -> Ellipse:
        return dataclasses.replace(self, a=self.a * k, b=self.b * (k if kb is None else kb))

    def grown(self, d: float) -> Ellipse:
        return dataclasses.replace(self, a=self.a + d, b=self.b + d)


@dataclasses.dataclass(frozen=True)
class Valve:
    """Two leaflets hinged at p1 and p2. Closed: they meet across the annulus, bowed `closed_bow` rad toward
    `open_side`; open: each swings by `open_angle` toward open_side (+1 = the side to the left of p1->p2)."""

    p1: tuple[float, float]
    p2: tuple[float, float]
    open_side: int
    open_angle: float
    thick: float
    bright: float
    name: str
    closed_bow: float = 0.25


@dataclasses.dataclass
class Geometry:
    view: str
    lv: Ellipse
    lv_wall: tuple[float, float]  # wall thickness (septal/anterior side, posterior/lateral side), units
    apex_dir: float  # angle (radians, image frame) pointing from LV centre to apex
    septal_sign: int  # which side of the apex direction the septum lies (+1: counter-clockwise)
    cavities: list[tuple[str, Ellipse, float]]  # name, ellipse, pulsation (+ expands in systole)
    walls: list[tuple[str, Ellipse, float]]  # outer ellipses of other chambers (tissue), wall thickness
    sac: Ellipse
    effusion: float
    valves: list[Valve]
    territories: list[tuple[float, float, str]]  # (centre deg from apex dir, half width deg, artery)
    regional_factor: dict[str, float]  # artery -> systolic motion factor (1 normal, 0.4 hypo, 0 akinesis)
    papillary: list[tuple[float, float, float]] = dataclasses.field(default_factory=list)
    jets: dict[str, tuple] = dataclasses.field(default_factory=dict)  # name -> (origin, direction, len, width)
    control_marks: dict[str, float] = dataclasses.field(default_factory=dict)


def _mm(x: float) -> float:
    return x / UNIT_MM


def _rot(cx, cy, r, ang):
    return (cx + r * math.cos(ang), cy + r * math.sin(ang))


GRADE_INDEX = {
    "mr": ("なし・微量", "軽度", "中等度", "高度"),
    "ar": ("なし", "軽度", "中等度", "高度"),
    "tr": ("なし", "軽度", "中等度", "高度"),
    "as_grade": ("なし", "軽度", "中等度", "高度"),
    "effusion": ("なし", "少量", "中等量", "大量"),
}
EFFUSION_MM = (0.0, 4.0, 9.0, 16.0)
RWMA_FACTOR = {"なし": 1.0, "壁運動低下": 0.4, "無収縮": 0.0}
ARTERY = {"前壁中隔・心尖部": "LAD", "下壁": "RCA", "側壁": "LCx"}
#: territory segments per view: (centre angle from the apex direction in degrees, half width, artery);
#: positive angles run toward the septum
TERRITORIES = {
    "4CH": [(0, 50, "LAD"), (100, 50, "RCA"), (-100, 50, "LCx")],
    "2CH": [(0, 40, "LAD"), (-95, 55, "LAD"), (95, 55, "RCA")],
    "3CH": [(0, 40, "LAD"), (95, 55, "LAD"), (-95, 55, "LCx")],
    "LAX": [(70, 60, "LAD"), (-70, 60, "LCx")],
    "SAX": [(0, 70, "LAD"), (125, 55, "RCA"), (-120, 50, "LCx")],
}
CONTROL_TERRITORIES = [(0, 50, "LAD"), (110, 50, "RCA"), (-110, 50, "LCx")]


def grade(s: dict, key: str) -> int:
    return GRADE_INDEX[key].index(s[key])


def _valve(hinge_a, hinge_b, open_side, name, thick_mm=1.6, bright=1.0, open_angle=1.25):
    return Valve(hinge_a, hinge_b, open_side, open_angle, _mm(thick_mm), bright, name)


def geometry(view: str, s: dict, control: bool = False) -> Geometry:
    """Reference (end-diastolic) geometry of `view` for study state `s`.

    `s` holds lvdd, ivst, pwt (mm), lad (mm), aod (mm), rv_dilation, effusion, as_grade, mr, ar, tr,
    rwma_territory, rwma_grade, ef. Views: LAX, SAX, 2CH, 3CH, 4CH, A5C, subcostal. In `control` mode every
    finding is made visible in every view (the negative-control benchmark).
    """
    lv_r = _mm(s["lvdd"]) / 2
    lv_len = lv_r * 2.05
    septal, posterior = _mm(s["ivst"]), _mm(s["pwt"])
    la_r = _mm(s["lad"]) / 2
    ao_r = _mm(s["aod"]) / 2
    rv_k = 1.45 if s["rv_dilation"] == "あり" else 1.0
    eff = _mm(EFFUSION_MM[grade(s, "effusion")])
    as_g = grade(s, "as_grade")
    as_open = (1.2, 0.75, 0.45, 0.22)[as_g]
    as_thick = (1.4, 2.0, 2.7, 3.4)[as_g]
    as_bright = (0.9, 1.2, 1.5, 1.8)[as_g]
    rwma = {"LAD": 1.0, "RCA": 1.0, "LCx": 1.0}
    if s["rwma_territory"] in ARTERY:
        rwma[ARTERY[s["rwma_territory"]]] = RWMA_FACTOR[s["rwma_grade"]]
    weak = 0.4  # "weak" visibility of LVH in 2CH/4CH: the walls drawn with 40 % of the thickening
    base = view if view in VIEWS else {"A5C": "4CH", "subcostal": "4CH"}[view]

    if base in ("4CH", "2CH", "3CH"):
        cx = {"4CH": 0.10, "2CH": 0.0, "3CH": 0.02}[base]
        top = 0.13
        lv = Ellipse(cx, top + lv_len, lv_r, lv_len, 0.0)
        if base in ("4CH", "2CH"):
            wall = (_mm(9) + weak * (septal - _mm(9)), _mm(9) + weak * (posterior - _mm(9)))
        else:
            wall = (septal, posterior)
        # what the view shows of the walls also places what lies beyond them (the RV beside the septum, the
        # pericardium around the LV): with the full thickness there, 4CH would show all of an LVH it draws at 40 %
        weak_view = base in ("4CH", "2CH") and not control
        drawn = _mm(9) if weak_view else septal
        base_y = lv.cy + lv.b
        cav = [("LV", lv, 0.0)]
        walls = []
        valves = [_valve((cx - lv_r * 0.85, base_y), (cx + lv_r * 0.85, base_y), -1, "mitral")]
        jets = {}
        la_c = (cx - (0.02 if base == "3CH" else 0.0), base_y + la_r * 0.95)
        la = Ellipse(la_c[0], la_c[1], la_r, la_r * 1.05)
        cav.append(("LA", la, 0.08))
        walls.append(("LA", la.grown(_mm(2.5)), 0.0))
        mv_c = (cx, base_y)
        jets["mr"] = (mv_c, math.pi / 2, la_r * 1.6, 0.35, grade(s, "mr"))
        sac_parts = [lv.grown(drawn), la]
        if base == "4CH":
            rv_r = _mm(17) * rv_k
            rv = Ellipse(cx - lv_r - drawn - rv_r * 0.95, top + lv_len * 1.08, rv_r, lv_len * 0.9 * (1 + 0.1 * (rv_k - 1)))
            ra_r = _mm(18)
            ra = Ellipse(rv.cx, base_y + ra_r * 0.95, ra_r, ra_r)
            cav += [("RV", rv, -0.12), ("RA", ra, 0.08)]
            walls += [("RV", rv.grown(_mm(3.5)), 0.0), ("RA", ra.grown(_mm(2.5)), 0.0)]
            tv_y = rv.cy + rv.b
            valves.append(_valve((rv.cx - rv.a * 0.85, tv_y), (rv.cx + rv.a * 0.85, tv_y), -1, "tricuspid"))
            jets["tr"] = ((rv.cx, tv_y), math.pi / 2, ra_r * 1.6, 0.35, grade(s, "tr"))
            sac_parts += [rv, ra]
        if base == "3CH" or view == "A5C":
            ao_ang = math.radians(55 if base == "3CH" else 80)
            hinge = (cx + lv_r * 0.55, base_y - lv_len * 0.15)
            ao_c = _rot(hinge[0], hinge[1], _mm(40), ao_ang)
            ao = Ellipse(ao_c[0], ao_c[1], _mm(45), ao_r, ao_ang)
            cav.append(("Ao", ao, 0.03))
            walls.append(("Ao", ao.grown(_mm(3)), 0.0))
            p1 = _rot(hinge[0], hinge[1], ao_r, ao_ang + math.pi / 2)
            p2 = _rot(hinge[0], hinge[1], ao_r, ao_ang - math.pi / 2)
            valves.append(Valve(p1, p2, 1, as_open, _mm(as_thick), as_bright, "aortic"))
            jets["ar"] = (hinge, ao_ang + math.pi, lv_len * 0.9, 0.3, grade(s, "ar"))
        apex_dir, septal_sign = -math.pi / 2, (-1 if base == "4CH" else 1)  # 4CH: septum on the image left
        sac = _bounding_sac(sac_parts, _mm(4))
        paps = []
    elif base == "LAX":
        lv = Ellipse(-0.10, 0.50, lv_len, lv_r, 0.0)
        wall = (septal, posterior)
        rv_h = _mm(13) * (1 + 0.35 * (rv_k - 1))
        rv = Ellipse(-0.02, lv.cy - lv_r - septal - rv_h, lv_len * 1.05, rv_h, 0.0)
        ao = Ellipse(lv.cx + lv_len + _mm(25), lv.cy - lv_r * 0.55, _mm(40), ao_r, math.radians(-8))
        la = Ellipse(ao.cx + _mm(6), lv.cy + lv_r * 0.55 + la_r * 0.55, la_r * 1.05, la_r)
        cav = [("LV", lv, 0.0), ("RV", rv, -0.1), ("Ao", ao, 0.03), ("LA", la, 0.08)]
        walls = [("RV", rv.grown(_mm(4)), 0.0), ("Ao", ao.grown(_mm(3)), 0.0), ("LA", la.grown(_mm(2.5)), 0.0)]
        hinge = (lv.cx + lv_len * 0.92, ao.cy)
        p1, p2 = (hinge[0], ao.cy - ao_r), (hinge[0], ao.cy + ao_r)
        mv_top = (hinge[0], ao.cy + ao_r + _mm(2))
        mv_bot = (hinge[0] - _mm(8), lv.cy + lv_r)
        valves = [_valve(mv_top, mv_bot, 1, "mitral"), Valve(p1, p2, -1, as_open, _mm(as_thick), as_bright, "aortic")]
        jets = {"mr": (((mv_top[0] + mv_bot[0]) / 2, (mv_top[1] + mv_bot[1]) / 2), math.radians(20), la_r * 1.6, 0.35,
                       grade(s, "mr")),
                "ar": (hinge, math.pi + math.radians(10), lv_len * 0.9, 0.3, grade(s, "ar"))}
        apex_dir, septal_sign = math.pi, 1  # apex to the left; septum on top (counter-clockwise from left)
        sac = _bounding_sac([lv.grown(posterior), la, rv], _mm(4))
        paps = []
    elif base == "SAX":
        flat = 0.8 if rv_k > 1 else 1.0  # septal flattening (D-shape) with a dilated RV
        lv = Ellipse(0.04, 0.55, lv_r, lv_r * flat, math.radians(-40))
        wall = (septal, posterior)
        rv_r = _mm(22) * rv_k
        rv_c = _rot(lv.cx, lv.cy, lv_r + septal + rv_r * 0.35, math.radians(-140))
        rv = Ellipse(rv_c[0], rv_c[1], rv_r * 1.5, rv_r * 0.75, math.radians(40))
        cav = [("RV", rv, -0.1), ("LV", lv, 0.0)]
        walls = [("RV", rv.grown(_mm(4)), 0.0)]
        valves, jets = [], {}
        apex_dir, septal_sign = math.radians(-90), -1  # anterior up, septum upper left
        sac = _bounding_sac([lv.grown(max(septal, posterior)), rv], _mm(4))
        paps = [(-0.5, 0.55, 0.22), (0.55, 0.45, 0.22)]  # in LV-normalised coordinates (u, v, radius)
    else:
        raise ValueError(f"unknown view {view!r}")

    territories = list(TERRITORIES[base])
    marks = {}
    if control:
        territories = list(CONTROL_TERRITORIES)
        # every finding also as a static cue that every view shows
        marks = {
            "ef": (s["ef"] - 15) / 60, "la": la_r, "rv": rv_k - 1, "as": as_g,
            "mr": grade(s, "mr"), "ar": grade(s, "ar"), "tr": grade(s, "tr"),
        }
        wall = (septal, posterior)
    return Geometry(base if view in VIEWS else view, lv, wall, apex_dir, septal_sign, cav, walls, sac, eff,
                    valves, territories, rwma, paps, jets, marks)


def _bounding_sac(parts: list[Ellipse], margin: float) -> Ellipse:
    xs0 = min(p.cx - max(p.a, p.b) for p in parts)
    xs1 = max(p.cx + max(p.a, p.b) for p in parts)
    ys0 = min(p.cy - max(p.a, p.b) for p in parts)
    ys1 = max(p.cy + max(p.a, p.b) for p in parts)
    return Ellipse((xs0 + xs1) / 2, (ys0 + ys1) / 2, (xs1 - xs0) / 2 * 0.92 + margin, (ys1 - ys0) / 2 * 0.92 + margin)
