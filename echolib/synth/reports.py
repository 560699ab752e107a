"""Japanese echocardiography reports from structured findings.

Sections 【計測】【所見】【結論】; one sentence per finding chosen among paraphrases, findings in varying order,
measurements with noise. The canonical one-sentence prompts per finding and grade live in `echolib.vocab`.
"""

from __future__ import annotations

import numpy as np

_LV_NORMAL = [
    "左室壁運動は全周性に良好で、局所壁運動異常を認めない。",
    "左室の収縮は良好で、明らかな局所壁運動異常はない。",
    "左室壁運動は正常、asynergyなし。",
]
_EF = {
    "正常": ["左室駆出率は保たれている。", "左室収縮能は正常範囲。", "LVEFは正常。"],
    "軽度低下": ["左室駆出率は軽度低下。", "左室収縮能は軽度に低下している。", "LVEFは軽度低下を示す。"],
    "中等度低下": ["左室駆出率は中等度低下。", "左室収縮能は中等度に低下している。", "LVEFは中等度低下。"],
    "高度低下": ["左室駆出率は高度低下。", "左室収縮能は高度に低下し、びまん性の壁運動低下を認める。", "LVEFは高度低下。"],
}
_RWMA_REGION = {
    "前壁中隔・心尖部": ["前壁中隔中部〜心尖部", "前壁中隔から心尖部", "心尖部を含む前壁中隔"],
    "下壁": ["下壁基部〜中部", "下壁", "下壁から下壁中隔"],
    "側壁": ["側壁", "後側壁", "側壁基部〜中部"],
}
_RWMA_GRADE = {"壁運動低下": ["は壁運動低下。", "に壁運動低下を認める。", "はhypokinesis。"],
               "無収縮": ["は無収縮。", "に無収縮を認める。", "はakinesis。"]}
_LV_DIL = {
    "なし": ["左室の大きさは正常範囲。", "左室内腔の拡大はない。"],
    "軽度拡大": ["左室は軽度拡大している。", "左室内腔の軽度拡大を認める。"],
    "高度拡大": ["左室は高度に拡大している。", "著明な左室拡大を認める。"],
}
_LVH = {
    "なし": ["左室壁厚は正常範囲。", "左室肥大はない。"],
    "軽度": ["軽度の左室肥大を認める。", "左室壁は軽度肥厚している。"],
    "高度": ["高度の左室肥大を認める。", "左室壁は著明に肥厚している。"],
}
_LVH_PATTERN = {"非対称性中隔肥厚": "（非対称性中隔肥厚）", "求心性肥大": "（求心性）", "なし": ""}
_LA = {
    "なし": ["左房の拡大はない。", "左房径は正常。"],
    "軽度": ["左房は軽度拡大。", "軽度の左房拡大を認める。"],
    "高度": ["左房は高度に拡大している。", "著明な左房拡大を認める。"],
}
_MR = {
    "なし・微量": ["僧帽弁逆流は認めないか微量。", "有意な僧帽弁逆流なし。", "MRは微量。"],
    "軽度": ["軽度僧帽弁逆流。", "軽度の僧帽弁逆流を認める。", "MRは軽度。"],
    "中等度": ["中等度僧帽弁逆流。", "中等度の僧帽弁逆流を認める。", "MRは中等度。"],
    "高度": ["高度僧帽弁逆流。", "高度の僧帽弁逆流を認め、逆流ジェットは左房後壁に達する。", "MRは高度。"],
}
_AR = {
    "なし": ["大動脈弁逆流なし。", "有意な大動脈弁逆流は認めない。"],
    "軽度": ["軽度大動脈弁逆流。", "軽度の大動脈弁逆流を認める。"],
    "中等度": ["中等度大動脈弁逆流。", "中等度の大動脈弁逆流を認める。"],
    "高度": ["高度大動脈弁逆流。", "高度の大動脈弁逆流を認める。"],
}
_TR = {
    "なし": ["三尖弁逆流なし。", "有意な三尖弁逆流は認めない。"],
    "軽度": ["軽度三尖弁逆流。", "軽度の三尖弁逆流を認める。"],
    "中等度": ["中等度三尖弁逆流。", "中等度の三尖弁逆流を認める。"],
    "高度": ["高度三尖弁逆流。", "高度の三尖弁逆流を認め、右房は拡大している。"],
}
_AS = {
    "なし": ["大動脈弁の開放は良好。", "大動脈弁に狭窄はない。"],
    "軽度": ["大動脈弁は軽度石灰化し、軽度大動脈弁狭窄症。", "軽度の大動脈弁狭窄を認める。"],
    "中等度": ["大動脈弁は石灰化し、開放制限を伴う。中等度大動脈弁狭窄症。", "中等度の大動脈弁狭窄を認める。"],
    "高度": ["大動脈弁は高度石灰化を伴い、弁尖の開放は著明に制限されている。高度大動脈弁狭窄症。",
             "高度大動脈弁狭窄症。"],
}
_EFF = {
    "なし": ["心嚢液なし。", "心嚢液貯留は認めない。"],
    "少量": ["少量の心嚢液を認める。", "心嚢液少量貯留。"],
    "中等量": ["中等量の心嚢液貯留を認める。", "心嚢液は中等量。"],
    "大量": ["大量の心嚢液貯留を認める。", "全周性に大量の心嚢液を認める。"],
}
_RV = {"なし": ["右室の拡大はない。", "右室径は正常。"],
       "あり": ["右室は拡大している。", "右室拡大を認め、心室中隔の扁平化を伴う。"]}
_EXTRA = [
    "下大静脈径は正常で、呼吸性変動は良好。", "心房細動調律下での記録。", "画質はやや不良。",
    "心房中隔に明らかなシャント血流は認めない。", "左室流入血流は弛緩障害パターン。",
    "上行大動脈の拡大はない。", "肺動脈弁逆流は生理的範囲。", "左室内に血栓を疑う所見はない。",
]

def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _measurements(s: dict, rng: np.random.Generator) -> str:
    parts = [f"LVDd/Ds {s['m_lvdd']}/{s['m_lvds']}mm", f"IVST/PWT {s['m_ivst']}/{s['m_pwt']}mm",
             f"EF {s['m_ef']}%", f"LAD {s['m_lad']}mm", f"AoD {s['m_aod']}mm", f"E/A {s['m_ea']}",
             f"TRPG {s['m_trpg']}mmHg"]
    if rng.random() < 0.3:
        parts.append(f"HR {int(s['heart_rate'])}bpm")
    if rng.random() < 0.06:  # a detailed measurement set: numbers and units make these the longest in tokens
        parts += [f"E/e' {rng.uniform(6, 18):.1f}", f"DcT {int(rng.uniform(140, 280))}ms",
                  f"TAPSE {int(rng.uniform(12, 26))}mm", f"IVC {int(rng.uniform(10, 24))}/{int(rng.uniform(4, 15))}mm",
                  f"LVOT径 {int(rng.uniform(18, 24))}mm", f"AV Vmax {rng.uniform(1.0, 4.8):.1f}m/s",
                  f"AV meanPG {int(rng.uniform(3, 60))}mmHg", f"LAVI {int(rng.uniform(20, 60))}ml/m2",
                  f"LVMI {int(rng.uniform(60, 160))}g/m2", f"RVD {int(rng.uniform(25, 45))}mm"]
    return "、".join(parts)


def _wall_motion(s: dict, rng: np.random.Generator) -> str:
    if s["rwma_territory"] == "なし":
        if s["ef_grade"] != "正常":  # diffusely reduced: no regional abnormality, but not "good" either
            return _pick(rng, ["明らかな局所壁運動異常はない。", "局所的な壁運動異常は認めない。"])
        return _pick(rng, _LV_NORMAL)
    region = _pick(rng, _RWMA_REGION[s["rwma_territory"]])
    return region + _pick(rng, _RWMA_GRADE[s["rwma_grade"]])


def _abnormal_summary(s: dict) -> list[str]:
    out = []
    if s["rwma_territory"] != "なし":
        out.append(f"{s['rwma_territory']}の{s['rwma_grade']}")
    if s["ef_grade"] != "正常":
        out.append(f"左室収縮能{s['ef_grade']}")
    if s["lv_dilation"] != "なし":
        out.append(f"左室{s['lv_dilation']}")
    if s["lvh"] != "なし":
        out.append(f"{s['lvh']}左室肥大")
    if s["la_enlargement"] != "なし":
        out.append(f"{s['la_enlargement']}左房拡大")
    for key, name in (("mr", "僧帽弁逆流"), ("ar", "大動脈弁逆流"), ("tr", "三尖弁逆流")):
        if s[key] not in ("なし", "なし・微量", "軽度"):
            out.append(f"{s[key]}{name}")
    if s["as_grade"] != "なし":
        out.append(f"{s['as_grade']}大動脈弁狭窄症")
    if s["effusion"] != "なし":
        out.append(f"心嚢液{s['effusion']}")
    if s["rv_dilation"] == "あり":
        out.append("右室拡大")
    return out


def write_report(s: dict, rng: np.random.Generator, previous: dict | None = None) -> str:
    """One report for study `s` (a dict of findings and measurements); `previous` adds a comparison line."""
    sentences = [
        _wall_motion(s, rng),
        _pick(rng, _EF[s["ef_grade"]]),
        _pick(rng, _LV_DIL[s["lv_dilation"]]),
        _pick(rng, _LVH[s["lvh"]]).replace("。", _LVH_PATTERN[s["lvh_pattern"]] + "。", 1)
        if s["lvh"] != "なし" else _pick(rng, _LVH["なし"]),
        _pick(rng, _LA[s["la_enlargement"]]),
        _pick(rng, _MR[s["mr"]]),
        _pick(rng, _AR[s["ar"]]),
        _pick(rng, _TR[s["tr"]]),
        _pick(rng, _AS[s["as_grade"]]),
        _pick(rng, _EFF[s["effusion"]]),
        _pick(rng, _RV[s["rv_dilation"]]),
    ]
    head, rest = sentences[:2], sentences[2:]
    rng.shuffle(rest)  # wall motion and EF lead, the rest in varying order
    body = head + rest
    n_extra = int(rng.choice([0, 1, 2, 4], p=[0.45, 0.3, 0.17, 0.08]))
    body += list(rng.choice(_EXTRA, size=n_extra, replace=False))
    if previous is not None:
        d = s["m_ef"] - previous["m_ef"]
        trend = "著変なし" if abs(d) < 5 else ("改善" if d > 0 else "低下")
        body.append(f"前回検査（{previous['study_date']:%Y年%m月}）と比較して左室収縮能は{trend}。")
    abnormal = _abnormal_summary(s)
    conclusion = "、".join(abnormal) + "。" if abnormal else _pick(rng, ["明らかな異常所見なし。", "正常心エコー図。"])
    return f"【計測】{_measurements(s, rng)}\n【所見】{''.join(body)}\n【結論】{conclusion}"
