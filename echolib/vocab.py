"""The shared vocabulary of echocardiography: views, findings and their grades, where each finding can be seen,
and one canonical Japanese sentence per finding and grade (the zero-shot prompts).

Used by the synthetic benchmark, the view filter, evaluation on real archives and the report alike; nothing here
depends on how clips are rendered.
"""

from __future__ import annotations

#: the five standard views the paper keeps, in its order
VIEWS: tuple[str, ...] = ("LAX", "SAX", "2CH", "3CH", "4CH")
#: every view the classifier knows: the five plus everything else (subcostal, A5C, spectral strips ...)
CLASSES: tuple[str, ...] = (*VIEWS, "OTHER")
#: the kinds of OTHER clip the synthetic benchmark renders
OTHER_KINDS: tuple[str, ...] = ("A5C", "subcostal", "spectral")

EF_GRADES = ("正常", "軽度低下", "中等度低下", "高度低下")
RWMA_TERRITORIES = ("なし", "前壁中隔・心尖部", "下壁", "側壁")  # none, LAD, RCA, LCx
TERRITORY_ARTERY = {"前壁中隔・心尖部": "LAD", "下壁": "RCA", "側壁": "LCx"}
RWMA_GRADES = ("なし", "壁運動低下", "無収縮")
LV_DILATION = ("なし", "軽度拡大", "高度拡大")
LVH = ("なし", "軽度", "高度")
LA_ENLARGEMENT = ("なし", "軽度", "高度")
MR = ("なし・微量", "軽度", "中等度", "高度")
REGURG = ("なし", "軽度", "中等度", "高度")  # AR, TR
AS = ("なし", "軽度", "中等度", "高度")
EFFUSION = ("なし", "少量", "中等量", "大量")
RV_DILATION = ("なし", "あり")

#: finding column -> its grades, in order of severity (prompts, probes and charts use this order)
FINDINGS: dict[str, tuple[str, ...]] = {
    "ef_grade": EF_GRADES,
    "rwma_territory": RWMA_TERRITORIES,
    "rwma_grade": RWMA_GRADES,
    "lv_dilation": LV_DILATION,
    "lvh": LVH,
    "la_enlargement": LA_ENLARGEMENT,
    "mr": MR,
    "ar": REGURG,
    "tr": REGURG,
    "as_grade": AS,
    "effusion": EFFUSION,
    "rv_dilation": RV_DILATION,
}

#: finding column -> its name in English, as DATA.md's table (for pages a clinician reads)
FINDING_NAMES: dict[str, str] = {
    "ef_grade": "LV systolic function (EF)", "rwma_territory": "regional wall motion: territory",
    "rwma_grade": "regional wall motion: grade", "lv_dilation": "LV dilation", "lvh": "LV hypertrophy",
    "la_enlargement": "LA enlargement", "mr": "mitral regurgitation", "ar": "aortic regurgitation",
    "tr": "tricuspid regurgitation", "as_grade": "aortic stenosis", "effusion": "pericardial effusion",
    "rv_dilation": "RV dilation",
}

#: every grade's English gloss (for readers who do not read Japanese; the Japanese stays the label)
GRADE_GLOSSES: dict[str, str] = {
    "正常": "normal", "軽度低下": "mildly reduced", "中等度低下": "moderately reduced", "高度低下": "severely reduced",
    "なし": "none", "前壁中隔・心尖部": "anteroseptal-apical (LAD)", "下壁": "inferior (RCA)", "側壁": "lateral (LCx)",
    "壁運動低下": "hypokinesis", "無収縮": "akinesis", "軽度拡大": "mildly dilated", "高度拡大": "severely dilated",
    "軽度": "mild", "中等度": "moderate", "高度": "severe", "なし・微量": "none or trace", "少量": "small",
    "中等量": "moderate", "大量": "large", "あり": "present",
}


def glossed(grade: str) -> str:
    """A grade with its English gloss: 軽度 (mild); an unknown grade as it is."""
    return f"{grade} ({GRADE_GLOSSES[grade]})" if grade in GRADE_GLOSSES else grade


_RWMA_WORDS = r"局所壁運動|壁運動異常|asynergy|前壁中隔|心尖部|下壁|側壁|無収縮|壁運動低下"
_LATIN = r"(?<![A-Za-z]){}(?![A-Za-z])"
#: finding column -> words by which a report sentence speaks of it (a regular expression): which sentences of a
#: retrieved report differ from the true one when the two studies' findings differ
FINDING_WORDS: dict[str, str] = {
    "ef_grade": r"駆出率|収縮能|左室壁運動は良好|びまん性|" + _LATIN.format("L?V?EF"),
    "rwma_territory": _RWMA_WORDS,
    "rwma_grade": _RWMA_WORDS,
    "lv_dilation": r"左室径|左室の大きさ|左室内腔|左室の?拡大|左室は(軽度|高度)に?拡大|左室拡大",
    "lvh": r"肥大|壁厚|肥厚",
    "la_enlargement": r"左房",
    "mr": r"僧帽弁逆流|" + _LATIN.format("MR"),
    "ar": r"大動脈弁逆流|" + _LATIN.format("AR"),
    "tr": r"三尖弁逆流|" + _LATIN.format("TR"),
    "as_grade": r"大動脈弁狭窄|大動脈弁の開放|大動脈弁に狭窄|" + _LATIN.format("AS"),
    "effusion": r"心嚢液",
    "rv_dilation": r"右室",
}

_ALL = VIEWS
#: finding -> views where it can be seen (DATA.md's table; "weak" counts as visible, and `weak` names those views)
#: and whether motion is needed
VISIBILITY: dict[str, dict] = {
    "ef_grade": {"views": _ALL, "motion": True, "doppler": False},
    "rwma_territory": {"views": _ALL, "motion": True, "doppler": False},
    "rwma_grade": {"views": _ALL, "motion": True, "doppler": False},  # the same row of DATA.md's table
    "lv_dilation": {"views": _ALL, "motion": False, "doppler": False},
    "lvh": {"views": _ALL, "motion": False, "doppler": False, "weak": ("2CH", "4CH")},
    "la_enlargement": {"views": ("LAX", "2CH", "3CH", "4CH"), "motion": False, "doppler": False},
    "mr": {"views": ("LAX", "2CH", "3CH", "4CH"), "motion": True, "doppler": True},
    "ar": {"views": ("LAX", "3CH"), "motion": True, "doppler": True},
    "tr": {"views": ("4CH",), "motion": True, "doppler": True},
    "as_grade": {"views": ("LAX", "3CH"), "motion": True, "doppler": False},
    "effusion": {"views": _ALL, "motion": False, "doppler": False},
    "rv_dilation": {"views": ("LAX", "SAX", "4CH"), "motion": False, "doppler": False, "weak": ("LAX",)},
}
#: the positive control's rule, written before it was run (issue #26): a finding is readable from the pixels when a
#: supervised classifier on its views reaches this AUROC of any grade against none
READABLE_AUROC = 0.85
#: which coronary territories each view shows (regional wall motion)
VIEW_TERRITORIES = {
    "LAX": ("LAD", "LCx"), "SAX": ("LAD", "RCA", "LCx"), "2CH": ("LAD", "RCA"),
    "3CH": ("LAD", "LCx"), "4CH": ("LAD", "RCA", "LCx"),
}

#: one canonical sentence per finding and grade, as the paper's reports state findings (presence and grade): the
#: zero-shot prompts, and the first of the synthetic reports' paraphrases
PROMPTS: dict[str, dict[str, str]] = {
    "ef_grade": {g: f"左室収縮能は{g}。" for g in EF_GRADES},
    "rwma_territory": {"なし": "局所壁運動異常なし。", **{t: f"{t}に壁運動異常あり。" for t in RWMA_TERRITORIES[1:]}},
    "lv_dilation": {"なし": "左室拡大なし。", "軽度拡大": "軽度左室拡大あり。", "高度拡大": "高度左室拡大あり。"},
    "lvh": {"なし": "左室肥大なし。", "軽度": "軽度左室肥大あり。", "高度": "高度左室肥大あり。"},
    "la_enlargement": {"なし": "左房拡大なし。", "軽度": "軽度左房拡大あり。", "高度": "高度左房拡大あり。"},
    "mr": {g: ("僧帽弁逆流なし。" if g == "なし・微量" else f"{g}僧帽弁逆流あり。") for g in MR},
    "ar": {g: ("大動脈弁逆流なし。" if g == "なし" else f"{g}大動脈弁逆流あり。") for g in REGURG},
    "tr": {g: ("三尖弁逆流なし。" if g == "なし" else f"{g}三尖弁逆流あり。") for g in REGURG},
    "as_grade": {g: ("大動脈弁狭窄なし。" if g == "なし" else f"{g}大動脈弁狭窄あり。") for g in AS},
    "effusion": {"なし": "心嚢液なし。", "少量": "少量の心嚢液あり。", "中等量": "中等量の心嚢液あり。",
                 "大量": "大量の心嚢液あり。"},
    "rv_dilation": {"なし": "右室拡大なし。", "あり": "右室拡大あり。"},
}
