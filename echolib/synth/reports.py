"""Japanese echocardiography reports from structured findings, in two styles (`synth.report_style`).

`findings` (the default, as the paper's reports): a list of short finding sentences, one per finding in a fixed
order, each stating presence/absence and grade, chosen among paraphrases (the first is the canonical sentence of
`echolib.vocab.PROMPTS`); no measurement section; the one number that may appear (EF) follows the truth.
`sectioned`: sections 【計測】【所見】【結論】 with measurements derived from the truth plus measurement noise.
"""

from __future__ import annotations

import numpy as np

from ..vocab import (
    EF_GRADES,
    MR,
    PROMPTS,
    REGURG,
)

STYLES = ("findings", "sectioned")

#: paraphrases after the canonical sentence (PROMPTS), per finding and grade; {ef} is the measured EF
_PARAPHRASES: dict[str, dict[str, list[str]]] = {
    "lv_dilation": {"なし": ["左室径は正常範囲。", "左室の拡大は認めない。"],
                    "軽度拡大": ["左室は軽度拡大。", "軽度の左室拡大を認める。"],
                    "高度拡大": ["左室は高度に拡大。", "著明な左室拡大を認める。"]},
    "lvh": {"なし": ["左室壁厚は正常。", "左室壁肥厚は認めない。"],
            "軽度": ["左室壁は軽度肥厚。", "軽度の左室肥大を認める。"],
            "高度": ["左室壁は著明に肥厚。", "高度の左室肥大を認める。"]},
    "ef_grade": {"正常": ["左室駆出率は保たれている(EF {ef}%)。", "左室壁運動は良好。"],
                 **{g: [f"左室駆出率は{g}(EF {{ef}}%)。", f"{g}の左室収縮能低下を認める。"] for g in EF_GRADES[1:]}},
    "la_enlargement": {"なし": ["左房径は正常。", "左房の拡大は認めない。"],
                       "軽度": ["左房は軽度拡大。", "軽度の左房拡大を認める。"],
                       "高度": ["左房は高度に拡大。", "著明な左房拡大を認める。"]},
    "mr": {"なし・微量": ["微量の僧帽弁逆流のみ。", "有意な僧帽弁逆流は認めない。"],
           **{g: [f"僧帽弁逆流は{g}。", f"{g}の僧帽弁逆流を認める。"] for g in MR[1:]}},
    "as_grade": {"なし": ["大動脈弁の開放は良好。", "大動脈弁に狭窄は認めない。"],
                 "軽度": ["大動脈弁は軽度石灰化し、軽度大動脈弁狭窄。", "軽度の大動脈弁狭窄を認める。"],
                 "中等度": ["大動脈弁は石灰化し開放制限あり、中等度大動脈弁狭窄。", "中等度の大動脈弁狭窄を認める。"],
                 "高度": ["大動脈弁は高度石灰化を伴い開放制限あり、高度大動脈弁狭窄。", "高度の大動脈弁狭窄を認める。"]},
    "ar": {"なし": ["有意な大動脈弁逆流は認めない。", "大動脈弁逆流は認めない。"],
           **{g: [f"大動脈弁逆流は{g}。", f"{g}の大動脈弁逆流を認める。"] for g in REGURG[1:]}},
    "tr": {"なし": ["有意な三尖弁逆流は認めない。", "三尖弁逆流は認めない。"],
           **{g: [f"三尖弁逆流は{g}。", f"{g}の三尖弁逆流を認める。"] for g in REGURG[1:]}},
    "rv_dilation": {"なし": ["右室径は正常。", "右室の拡大は認めない。"],
                    "あり": ["右室は拡大。", "右室拡大を認め、心室中隔の扁平化を伴う。"]},
    "effusion": {"なし": ["心嚢液貯留は認めない。", "心嚢液は認めない。"],
                 "少量": ["心嚢液少量。", "少量の心嚢液貯留を認める。"],
                 "中等量": ["心嚢液は中等量。", "中等量の心嚢液貯留を認める。"],
                 "大量": ["心嚢液は大量。", "全周性に大量の心嚢液貯留を認める。"]},
}
_RWMA_NONE = ["明らかな局所壁運動異常は認めない。", "asynergyなし。"]
#: the fixed order of the findings style (wall motion after EF, as in the paper's example)
FINDING_ORDER = ("lv_dilation", "lvh", "ef_grade", "rwma_territory", "la_enlargement", "mr", "as_grade", "ar", "tr",
                 "rv_dilation", "effusion")

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
    if rng.random() < 0.06:  # a detailed measurement set, each number derived from the truth
        parts += [f"AV Vmax {s['m_av_vmax']:.1f}m/s", f"AV meanPG {s['m_av_meanpg']}mmHg",
                  f"LAVI {s['m_lavi']}ml/m2", f"LVMI {s['m_lvmi']}g/m2", f"RVD {s['m_rvd']}mm"]
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


def write_report(s: dict, rng: np.random.Generator, previous: dict | None = None, style: str = "findings") -> str:
    """One report for study `s` (a dict of findings and measurements) in `style` (see the module docstring)."""
    if style == "findings":
        return findings_report(s, rng)
    if style != "sectioned":
        raise ValueError(f"unknown report style {style!r}; choose one of {STYLES}")
    return sectioned_report(s, rng, previous)


def findings_report(s: dict, rng: np.random.Generator) -> str:
    """One sentence per finding in FINDING_ORDER, each the canonical sentence or a paraphrase (equally likely)."""
    out = []
    for f in FINDING_ORDER:
        if f == "rwma_territory":
            out.append(_rwma_sentence(s, rng))
            continue
        g = s[f]
        sentence = _pick(rng, [PROMPTS[f][g], *_PARAPHRASES[f][g]])
        if f == "lvh" and g != "なし" and s["lvh_pattern"] != "なし" and rng.random() < 0.5:
            sentence = sentence.replace("。", _LVH_PATTERN[s["lvh_pattern"]] + "。", 1)
        out.append(sentence.replace("{ef}", str(s["m_ef"])))
    return "".join(out)


def _rwma_sentence(s: dict, rng: np.random.Generator) -> str:
    t, g = s["rwma_territory"], s["rwma_grade"]
    if t == "なし":
        return _pick(rng, [PROMPTS["rwma_territory"]["なし"], *_RWMA_NONE])
    region = _pick(rng, [t, *_RWMA_REGION[t]])
    return region + _pick(rng, [f"に{g}あり。", *_RWMA_GRADE[g][:2]])


def sectioned_report(s: dict, rng: np.random.Generator, previous: dict | None = None) -> str:
    """Sections 【計測】【所見】【結論】; `previous` (the patient's previous study) adds a comparison line."""
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
