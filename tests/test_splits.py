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
