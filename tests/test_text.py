import polars as pl

from echolib import text


def test_tokenizer_round_trip_and_coverage(tiny_data, tmp_path):
    reports = pl.read_parquet(tiny_data / "studies.parquet")["report"].to_list()
    train, valid = reports[:-3], reports[-3:]
    text.train_tokenizer(train, tmp_path / "tok", vocab_size=2000, max_length=256)
    tok = text.load_tokenizer(tmp_path / "tok")
    assert type(tok).__name__ == "BertJapaneseTokenizer"
    assert text.unk_rate(tok, train) == 0.0  # every training character is in the vocabulary
    assert text.unk_rate(tok, valid) < 0.01
    ids, mask, truncated = text.encode(tok, reports[:4], max_length=256)
    assert ids.shape == (4, 256) and int(mask.sum(1).min()) > 20
    decoded = tok.decode(ids[0][mask[0].bool()], skip_special_tokens=True).replace(" ", "")
    assert "左室" in decoded and decoded.count("。") >= 10  # the finding sentences
    ids, _, truncated = text.encode(tok, reports[:4], max_length=16)
    assert truncated == 4


def test_normalize_folds_width_and_spaces():
    assert text.normalize("ＥＦ　６０％  です\n次") == "EF 60% です\n次"


def test_the_same_reports_give_the_same_vocabulary_file(tiny_data, tmp_path):
    """The trainer breaks ties in hash order, which differs between processes: train in two processes."""
    import subprocess
    import sys

    reports = pl.read_parquet(tiny_data / "studies.parquet")["report"].to_list()
    pl.DataFrame({"report": reports}).write_parquet(tmp_path / "r.parquet")
    code = ("import sys, polars as pl; from echolib.text import train_tokenizer; "
            "train_tokenizer(pl.read_parquet(sys.argv[1])['report'].to_list(), sys.argv[2], vocab_size=2000)")
    for out in ("a", "b"):
        subprocess.run([sys.executable, "-c", code, str(tmp_path / "r.parquet"), str(tmp_path / out)], check=True)
    a, b = ((tmp_path / o / "vocab.txt").read_text() for o in ("a", "b"))
    assert a == b and a.splitlines()[:5] == text.SPECIAL


def test_findings_split_at_sentences_and_the_authors_commas():
    assert text.split_findings("左室拡大なし。軽度左房拡大あり。") == ["左室拡大なし。", "軽度左房拡大あり。"]
    # the authors' CSV separates findings with commas; 「、」 inside a sentence stays
    assert text.split_findings("左室拡大なし,境界域の左室肥大あり,大動脈弁は石灰化し、開放制限あり") == [
        "左室拡大なし。", "境界域の左室肥大あり。", "大動脈弁は石灰化し、開放制限あり。"]
    assert text.split_findings("") == []


def test_encoded_findings_rebuild_each_report_in_order(tiny_data, tmp_path):
    reports = pl.read_parquet(tiny_data / "studies.parquet")["report"].to_list()[:5]
    tok = text.train_tokenizer(reports, tmp_path / "tok", vocab_size=500)
    enc = text.encode_findings(tok, reports, max_length=256)
    whole = tok([text.normalize(r) for r in reports], max_length=256, padding="max_length", truncation=True)
    assert enc["input_ids"].tolist() == whole["input_ids"]  # sentence by sentence = the whole report at once
    assert enc["study_sents"][-1] == sum(len(text.split_findings(r)) for r in reports) and enc["truncated"] == 0
