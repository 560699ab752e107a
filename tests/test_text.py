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
    assert "左室" in decoded and "【計測】" in decoded
    ids, _, truncated = text.encode(tok, reports[:4], max_length=16)
    assert truncated == 4


def test_normalize_folds_width_and_spaces():
    assert text.normalize("ＥＦ　６０％  です\n次") == "EF 60% です\n次"
