import polars as pl
import pytest

from echolib.splits import split_patients


def test_ratios_and_disjoint():
    ids = [f"P{i:05d}" for i in range(4000)]
    s = split_patients(ids, seed=3)
    counts = dict(s.group_by("split").len().iter_rows())
    assert counts == {"train": 3500, "valid": 100, "test": 400}
    assert s["patient_id"].n_unique() == 4000


def test_deterministic_and_order_independent():
    ids = [f"P{i}" for i in range(50)]
    a = split_patients(ids, seed=1)
    b = split_patients(list(reversed(ids)) + ids[:5], seed=1)  # duplicates and order do not matter
    assert a.equals(b)
    assert not a.equals(split_patients(ids, seed=2))


def test_studies_of_a_patient_share_a_split():
    studies = pl.DataFrame({"study_id": [f"S{i}" for i in range(300)], "patient_id": [f"P{i // 3}" for i in range(300)]})
    s = studies.join(split_patients(studies["patient_id"], seed=0), on="patient_id")
    assert (s.group_by("patient_id").agg(pl.col("split").n_unique())["split"] == 1).all()


def test_bad_ratios():
    with pytest.raises(ValueError, match="summing to 1"):
        split_patients(["a"], ratios=(0.5, 0.5, 0.5))


def test_assign_studies_marks_exclusions_and_4ch_subset():
    from echolib.splits import NO_CLIP, assign_studies, patients_in_two_splits, table2

    studies = pl.DataFrame({"study_id": [f"S{i}" for i in range(40)], "patient_id": [f"P{i // 2}" for i in range(40)]})
    rows = []
    for i in range(40):
        if i % 10 == 9:
            continue  # no clip at all
        rows.append({"video_id": f"V{i}a", "study_id": f"S{i}", "pred_view": "LAX", "kept": True})
        rows.append({"video_id": f"V{i}b", "study_id": f"S{i}", "pred_view": "4CH", "kept": i % 3 != 0})
    videos = pl.DataFrame(rows)
    a = assign_studies(studies, videos, (0.5, 0.25, 0.25), seed=0)
    assert a.height == 40
    assert (a.filter(pl.col("excluded") == NO_CLIP)["study_id"].to_list()) == ["S9", "S19", "S29", "S39"]
    assert a.filter(pl.col("study_id") == "S3")["has_4ch"].item() is False
    assert a.filter(pl.col("study_id") == "S4")["has_4ch"].item() is True
    assert patients_in_two_splits(a) == 0
    expected = a.filter((pl.col("split") == "test") & pl.col("has_4ch") & (pl.col("excluded") == "")).height
    t2 = table2(a, videos)
    assert t2["test_4ch"]["studies"] == expected
    assert sum(t2[s]["studies"] for s in ("train", "valid", "test")) == 36
    assert sum(t2[s]["clips"]["LAX"] for s in ("train", "valid", "test")) == 36
