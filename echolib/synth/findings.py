"""Ground truth of the synthetic benchmark: patients, their studies and structured findings.

Findings follow DATA.md: grades in Japanese report vocabulary, correlated as in patients (ischaemic wall-motion
abnormality lowers EF; a dilated LV brings functional MR; AS comes with LVH) and evolving between a patient's
studies (EF falls, MR progresses, effusion appears and resolves), so a study-level split would leak.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from ..vocab import AS, EF_GRADES, EFFUSION, LA_ENLARGEMENT, LV_DILATION, LVH, MR, REGURG, RV_DILATION


def grade_of(value: float, cuts: tuple[float, ...], grades: tuple[str, ...], descending: bool = False) -> str:
    """Map a measurement to its grade; `cuts` are the lower bounds of grades 1.. (or upper bounds if descending)."""
    if descending:
        return grades[sum(value < c for c in cuts)]
    return grades[sum(value >= c for c in cuts)]


def ef_grade(ef: float) -> str:
    return grade_of(ef, (55, 45, 30), EF_GRADES, descending=True)


def lvdd_grade(lvdd: float, sex: str) -> str:
    lo, hi = (56, 66) if sex == "M" else (52, 62)
    return grade_of(lvdd, (lo, hi), LV_DILATION)


def lvh_grade(wall: float) -> str:
    return grade_of(wall, (12, 15), LVH)


def la_grade(lad: float) -> str:
    return grade_of(lad, (40, 50), LA_ENLARGEMENT)


def _clip_int(x: float, lo: int, hi: int) -> int:
    return int(min(max(round(x), lo), hi))


def sample_patients(n: int, rng: np.random.Generator) -> list[dict]:
    """Patients with their latent disease processes (not written to the tables) and baseline anatomy."""
    patients = []
    for i in range(n):
        sex = "M" if rng.random() < 0.55 else "F"
        age = int(rng.integers(25, 90))
        old = (age - 25) / 65
        ischaemic = rng.random() < 0.12 + 0.2 * old
        p = {
            "patient_id": f"P{i:06d}",
            "sex": sex,
            "age": age,
            "height_cm": round(float(rng.normal(168 if sex == "M" else 155, 7)), 1),
            "lv_size": float(rng.normal(1.0, 0.04)),        # baseline anatomy scale
            "heart_rate": float(rng.uniform(55, 95)),
            "n_studies": int(rng.choice([1, 2, 3, 4], p=[0.42, 0.3, 0.17, 0.11])),
            # latent processes
            "ischaemic": ischaemic,
            "territory": str(rng.choice(["前壁中隔・心尖部", "下壁", "側壁"], p=[0.5, 0.3, 0.2])) if ischaemic else "なし",
            "dcm": (not ischaemic) and rng.random() < 0.08,
            "htn": rng.random() < 0.15 + 0.3 * old,
            "as_rate": float(rng.exponential(0.35)) if rng.random() < 0.1 + 0.25 * old else 0.0,
            "mr0": float(rng.exponential(0.35)),
            "ar0": float(rng.exponential(0.8)) if rng.random() < 0.25 else 0.0,
            "tr0": float(rng.exponential(0.5)),
            "ef_decline": float(rng.exponential(3.0)) if rng.random() < 0.3 else 0.0,
            "septal_lvh": rng.random() < 0.3,
        }
        patients.append(p)
    return patients


def _study_findings(p: dict, k: int, rng: np.random.Generator) -> dict:
    """Ground truth of the patient's k-th study (k = 0, 1, ...): disease evolves with k."""
    sex, age = p["sex"], p["age"] + k
    ef = rng.normal(63, 4) - p["ef_decline"] * k
    rwma_grade = "なし"
    if p["ischaemic"]:
        rwma_grade = "無収縮" if rng.random() < 0.35 + 0.1 * k else "壁運動低下"
        ef -= 9 if rwma_grade == "壁運動低下" else 17
    if p["dcm"]:
        ef -= 24 + 3 * k
    ef = float(np.clip(ef + rng.normal(0, 2), 15, 75))
    lvdd = 48 * p["lv_size"] + (4 if sex == "M" else 0) + 0.45 * max(0.0, 55 - ef) + (10 if p["dcm"] else 0)
    lvdd += rng.normal(0, 1.5)
    wall = 9 + (3.5 if p["htn"] else 0) + 0.8 * p["as_rate"] * (k + 2) + rng.normal(0, 0.8)
    wall = float(np.clip(wall, 7, 20))
    ivst = wall + (2.5 if p["septal_lvh"] and wall >= 11 else 0)
    pwt = wall
    # valves: latent continuous severity 0..3+
    as_sev = p["as_rate"] * (k + 2) + (0.6 if age > 75 and p["as_rate"] > 0 else 0)
    mr_sev = p["mr0"] + 0.35 * k * (p["mr0"] > 0.8) + max(0.0, (lvdd - 56) / 6) + 0.5 * p["ischaemic"]
    mr_sev += 0.25 * rng.normal()
    ar_sev = p["ar0"] * (1 + 0.2 * k)
    tr_sev = p["tr0"] + 0.3 * max(0.0, mr_sev - 1.5) + 0.15 * rng.normal()
    rv_dil = tr_sev > 2.2 or (p["dcm"] and rng.random() < 0.4)
    lad = 33 + 5 * max(0.0, mr_sev - 0.5) + 0.12 * (age - 40) + (4 if ef < 40 else 0) + rng.normal(0, 2)
    effusion_sev = 0.0
    if rng.random() < 0.09:
        effusion_sev = float(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))

    def sev(x: float, grades: tuple[str, ...]) -> str:
        return grades[_clip_int(np.floor(max(x, 0.0)), 0, len(grades) - 1)]

    return {
        "ef": round(ef, 1),
        "ef_grade": ef_grade(ef),
        "rwma_territory": p["territory"],
        "rwma_grade": rwma_grade,
        "lvdd": round(float(lvdd), 1),
        "lv_dilation": lvdd_grade(lvdd, sex),
        "ivst": round(ivst, 1),
        "pwt": round(pwt, 1),
        "lvh": lvh_grade(max(ivst, pwt)),
        "lvh_pattern": "なし" if max(ivst, pwt) < 12 else ("非対称性中隔肥厚" if ivst - pwt >= 2 else "求心性肥大"),
        "lad": round(float(lad), 1),
        "la_enlargement": la_grade(lad),
        "mr": sev(mr_sev, MR),
        "ar": sev(ar_sev, REGURG),
        "tr": sev(tr_sev, REGURG),
        "as_grade": sev(as_sev, AS),
        "effusion": sev(effusion_sev, EFFUSION),
        "rv_dilation": RV_DILATION[int(rv_dil)],
        "heart_rate": round(float(np.clip(p["heart_rate"] + rng.normal(0, 8), 50, 110)), 0),
    }


def measured(f: dict, sex: str, age: int, rng: np.random.Generator) -> dict:
    """Report measurements: each derived from the truth plus measurement noise (what a sonographer would write)."""
    lvds = f["lvdd"] * np.sqrt(max(1 - f["ef"] / 100, 0.05)) ** 0.9
    tr_pg = 18 + 9 * REGURG.index(f["tr"]) + rng.normal(0, 3)
    # mitral inflow E/A falls with age and hypertrophy (impaired relaxation) and rises in restrictive filling
    ea = 1.6 - 0.012 * (age - 30) - 0.2 * (f["lvh"] != "なし") + 0.7 * (f["ef"] < 35) + rng.normal(0, 0.1)
    vmax = (1.2, 2.8, 3.5, 4.5)[AS.index(f["as_grade"])] + rng.normal(0, 0.15)
    d, s_, p_ = f["lvdd"] / 10, f["ivst"] / 10, f["pwt"] / 10  # cm; Devereux LV mass over a BSA of 1.7 m2
    lvmi = (0.8 * 1.04 * ((d + s_ + p_) ** 3 - d**3) + 0.6) / 1.7
    return {
        "m_lvdd": _clip_int(f["lvdd"] + rng.normal(0, 1.5), 30, 90),
        "m_lvds": _clip_int(lvds + rng.normal(0, 1.5), 15, 85),
        "m_ivst": _clip_int(f["ivst"] + rng.normal(0, 0.6), 5, 25),
        "m_pwt": _clip_int(f["pwt"] + rng.normal(0, 0.6), 5, 25),
        "m_ef": _clip_int(f["ef"] + rng.normal(0, 3), 10, 85),
        "m_lad": _clip_int(f["lad"] + rng.normal(0, 1.5), 20, 75),
        "m_aod": _clip_int((32 if sex == "M" else 29) + rng.normal(0, 2), 20, 45),
        "m_ea": round(float(np.clip(ea, 0.4, 2.8)), 1),
        "m_trpg": _clip_int(tr_pg, 8, 80),
        "m_av_vmax": round(float(max(vmax, 0.8)), 1),
        "m_av_meanpg": _clip_int(0.6 * 4 * max(vmax, 0.8) ** 2, 2, 120),
        "m_lavi": _clip_int(0.9 * f["lad"] - 12 + rng.normal(0, 2), 10, 90),
        "m_lvmi": _clip_int(lvmi + rng.normal(0, 5), 40, 250),
        "m_rvd": _clip_int(30 + 12 * (f["rv_dilation"] == "あり") + rng.normal(0, 2), 18, 60),
    }


def sample_studies(patients: list[dict], rng: np.random.Generator) -> list[dict]:
    """All studies of all patients, with ground truth, measurements and dates."""
    studies = []
    for p in patients:
        date = dt.date(2015, 1, 1) + dt.timedelta(days=int(rng.integers(0, 365 * 5)))
        for k in range(p["n_studies"]):
            f = _study_findings(p, k, rng)
            studies.append({
                "study_id": f"{p['patient_id']}-S{k}",
                "patient_id": p["patient_id"],
                "study_index": k,
                "study_date": date,
                **f,
                **measured(f, p["sex"], p["age"] + k, rng),
            })
            date = date + dt.timedelta(days=int(rng.integers(90, 720)))
    return studies
