"""The perfect reader's ceilings against ranks worked out by hand."""

import polars as pl
import pytest

from echolib.oracle import ceilings, shown_findings
from echolib.vocab import FINDINGS

NONE = {f: grades[0] for f, grades in FINDINGS.items()}


def _truth(*changes):
    return pl.DataFrame([{"study_id": f"S{i}", **NONE, **c} for i, c in enumerate(changes)])


def test_what_a_studys_clips_show():
    clips = pl.DataFrame({"view": ["4CH", "LAX"], "doppler": [False, True]})
    seen = shown_findings(clips, {**NONE, "rwma_territory": "下壁"}, ("LAX", "SAX", "2CH", "3CH", "4CH"))
    assert "tr" not in seen  # TR needs a colour-Doppler 4CH clip; the 4CH clip here is B-mode
    assert {"ar", "mr", "as_grade", "lvh"} <= seen  # the LAX clip is colour Doppler: AR and MR show there
    assert "rwma_territory" in seen  # the inferior wall (RCA) is seen in the 4CH view
    lax_only = shown_findings(clips, {**NONE, "rwma_territory": "下壁"}, ("LAX",))
    assert "rwma_territory" not in lax_only and "ar" in lax_only  # LAX shows LAD and LCx, not RCA


def test_ceilings_by_hand():
    """Three studies: S0 and S1 differ only in TR, S2 in AS. Every finding: no ties, ranks 1. The 4CH reader (B-mode
    4CH clips only: no TR, no AS) cannot tell any of them apart: 3 tie, expected rank 2, R@10 certain."""
    truth = _truth({}, {"tr": "高度"}, {"as_grade": "高度"})
    clips = pl.DataFrame({"study_id": ["S0", "S1", "S2"], "view": ["4CH"] * 3, "doppler": [False] * 3})
    full = ceilings(truth, clips, None)
    assert full["mcmrr_v2r_n"] == pytest.approx(1 / 3) and full["r10_v2r_pct"] == 100 and full["tied_v2r"] == 1
    four = ceilings(truth, clips, ("4CH",))
    assert four["tied_v2r"] == 3 and four["mcmrr_v2r_n"] == pytest.approx(2 / 3)
    assert four["tied_r2v"] == 3 and four["mcmrr_r2v_n"] == pytest.approx(2 / 3)
    # S1's 4CH clip in colour Doppler shows its severe TR: S1 alone agrees with itself; S0 and S2 still tie
    clips = clips.with_columns(doppler=pl.Series([False, True, False]))
    four = ceilings(truth, clips, ("4CH",))
    # video -> report: S0's and S2's B-mode clips show neither TR nor AS: all three reports agree (k = 3); S1's
    # colour clip shows its severe TR: only its own report agrees (k = 1)
    assert four["tied_v2r"] == pytest.approx((3 + 1 + 3) / 3)
    assert four["mcmrr_v2r_n"] == pytest.approx(((1 + 2 / 2) + 1 + (1 + 2 / 2)) / 3 / 3)
    # report -> video: report S1 (severe TR) agrees with every study (none shows TR to contradict it but S1, which
    # shows it); reports S0 and S2 (no TR) disagree with S1's clips: k = 3, 2, 2
    assert four["tied_r2v"] == pytest.approx((2 + 3 + 2) / 3)


def test_a_clip_shows_what_its_true_view_shows_once_the_filter_chose_it():
    """A subcostal clip the view filter took for 4CH is embedded by a 4CH model but shows no 4CH finding."""
    clips = pl.DataFrame({"view": ["OTHER"], "pred_view": ["4CH"], "doppler": [True]})
    assert shown_findings(clips, NONE, ("4CH",)) == set()
    clips = pl.DataFrame({"view": ["4CH"], "pred_view": ["LAX"], "doppler": [True]})
    assert shown_findings(clips, NONE, ("4CH",)) == set()  # not chosen by a 4CH model
