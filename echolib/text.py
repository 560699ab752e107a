"""Report text: normalisation and the Japanese tokenizer (MeCab word splitting + WordPiece).

`train_tokenizer(reports, out_dir)` learns a WordPiece vocabulary on MeCab (fugashi + unidic-lite) words of the
*training* reports (the most frequent words and every character) and saves a transformers
`BertJapaneseTokenizer` directory that round-trips through `AutoTokenizer.from_pretrained(out_dir)`. Every character seen in training enters the vocabulary, so unseen
characters, not unseen words, are what produces [UNK]. `load_tokenizer(dir)` never reaches a hub.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def normalize(text: str) -> str:
    """NFKC (full-width digits/letters to half-width), section line breaks kept, runs of spaces folded."""
    text = unicodedata.normalize("NFKC", text)
    return "\n".join(" ".join(line.split()) for line in text.splitlines())


def mecab_words(texts, tagger=None) -> list[list[str]]:
    import fugashi

    tagger = tagger or fugashi.Tagger()
    return [[w.surface for w in tagger(normalize(t))] for t in texts]


def train_tokenizer(reports: list[str], out_dir: str | Path, vocab_size: int = 8000, max_length: int = 256):
    """Learn a WordPiece vocabulary on MeCab words of `reports` and save a BertJapaneseTokenizer directory.

    The vocabulary holds the special tokens, every character seen (alone and as a `##` continuation, so no
    training character becomes [UNK]) and the most frequent whole words up to `vocab_size` (ties broken by the
    word), in a fixed order: the same reports give the same file. (Hugging Face's WordPiece trainer breaks ties
    between equally frequent merges in hash order, which differs from process to process, so it gave different
    vocabularies for the same reports.) Words outside the vocabulary split into characters."""
    import collections

    from transformers import BertJapaneseTokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    words = collections.Counter(w for ws in mecab_words(reports) for w in ws)
    chars = sorted({ch for w in words for ch in w})
    pieces = {piece for ch in chars for piece in (ch, "##" + ch)}
    budget = max(0, vocab_size - len(SPECIAL) - len(pieces))
    frequent = [w for w, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0])) if w not in pieces][:budget]
    tokens = SPECIAL + sorted(pieces | set(frequent))
    (out / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    bert = BertJapaneseTokenizer(
        vocab_file=str(out / "vocab.txt"), do_lower_case=False, word_tokenizer_type="mecab",
        subword_tokenizer_type="wordpiece", mecab_kwargs={"mecab_dic": "unidic_lite"}, model_max_length=max_length,
    )
    bert.save_pretrained(str(out))
    return bert


def load_tokenizer(path: str | Path, max_length: int | None = None):
    """AutoTokenizer from a local directory only (a trained one, or a local bert-base-japanese-v3 copy)."""
    from transformers import AutoTokenizer

    path = Path(path)
    if not (path / "tokenizer_config.json").is_file():
        raise FileNotFoundError(f"{path}: not a tokenizer directory (tokenizer_config.json missing)")
    kw = {"model_max_length": max_length} if max_length else {}
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True, **kw)


def vocab_size(path: str | Path) -> int:
    """Vocabulary size of a local tokenizer directory without loading it (vocab.txt, else config.json)."""
    import json

    path = Path(path)
    if (path / "vocab.txt").is_file():
        return sum(1 for line in (path / "vocab.txt").read_text(encoding="utf-8").splitlines() if line)
    if (path / "config.json").is_file():
        return int(json.loads((path / "config.json").read_text())["vocab_size"])
    raise FileNotFoundError(f"{path}: no vocab.txt or config.json (run the tokenizer stage first)")


def encode(tokenizer, texts: list[str], max_length: int):
    """input_ids / attention_mask tensors (padded to max_length) and how many reports were truncated."""
    texts = [normalize(t) for t in texts]
    full = tokenizer(texts, add_special_tokens=True)["input_ids"]
    truncated = sum(len(ids) > max_length for ids in full)
    enc = tokenizer(texts, max_length=max_length, truncation=True, padding="max_length", return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"], truncated


def split_findings(report: str) -> list[str]:
    """A report's finding sentences: split after 「。」 and at the commas the authors' CSV separates findings with
    (each piece keeps or gets its 「。」). Line breaks and section marks stay inside their sentence."""
    import re

    pieces = [p.strip() for p in re.split(r"(?<=。)|,", normalize(report))]
    return [p if p.endswith("。") else p + "。" for p in pieces if p and p != "。"]


def encode_findings(tokenizer, reports: list[str], max_length: int) -> dict:
    """Reports as finding sentences, each tokenized once (no special tokens), for the loader to reorder.

    Returns sent_ids (every sentence's tokens, concatenated), sent_bounds (sentence k is
    sent_ids[sent_bounds[k]:sent_bounds[k+1]]), study_sents (report i has sentences study_sents[i]:study_sents[i+1])
    and input_ids/attention_mask of each report in its own order ([CLS] sentences [SEP], truncated, padded), the
    count of truncated reports, and the special token ids."""
    sentences = [split_findings(r) for r in reports]
    flat = [x for ss in sentences for x in ss]
    ids = tokenizer(flat, add_special_tokens=False)["input_ids"] if flat else []
    sent_bounds = np.concatenate([[0], np.cumsum([len(x) for x in ids])]).astype(np.int64)
    study_sents = np.concatenate([[0], np.cumsum([len(ss) for ss in sentences])]).astype(np.int64)
    sent_ids = np.array([t for x in ids for t in x], dtype=np.int32)
    special = {"cls": tokenizer.cls_token_id, "sep": tokenizer.sep_token_id, "pad": tokenizer.pad_token_id}
    input_ids = np.full((len(reports), max_length), special["pad"], dtype=np.int32)
    mask = np.zeros((len(reports), max_length), dtype=np.int8)
    truncated = 0
    for i in range(len(reports)):
        row = join_sentences(sent_ids, sent_bounds, range(study_sents[i], study_sents[i + 1]), special, max_length)
        truncated += row[1]
        input_ids[i, :len(row[0])], mask[i, :len(row[0])] = row[0], 1
    return {"sent_ids": sent_ids, "sent_bounds": sent_bounds, "study_sents": study_sents, "input_ids": input_ids,
            "attention_mask": mask, "truncated": truncated, "special": special}


def join_sentences(sent_ids, sent_bounds, order, special: dict, max_length: int) -> tuple[np.ndarray, bool]:
    """[CLS] + the sentences in `order` + [SEP], cut to max_length; and whether anything was cut."""
    body = np.concatenate([sent_ids[sent_bounds[k]:sent_bounds[k + 1]] for k in order] or [np.zeros(0, np.int32)])
    cut = len(body) > max_length - 2
    return np.concatenate([[special["cls"]], body[:max_length - 2], [special["sep"]]]).astype(np.int32), cut


def unk_rate(tokenizer, texts: list[str]) -> float:
    """Share of [UNK] among all tokens of `texts`."""
    ids = tokenizer([normalize(t) for t in texts], add_special_tokens=False)["input_ids"]
    total = sum(len(x) for x in ids)
    unk = sum(x.count(tokenizer.unk_token_id) for x in ids)
    return unk / max(total, 1)


def token_lengths(tokenizer, texts: list[str]) -> list[int]:
    return [len(x) for x in tokenizer([normalize(t) for t in texts], add_special_tokens=True)["input_ids"]]


def split_reports(raw: str | Path, split_path: str | Path):
    """The studies table joined with its split (study_id, report, split, ...)."""
    import polars as pl

    return pl.read_parquet(Path(raw) / "studies.parquet").join(
        pl.read_parquet(split_path).select("study_id", "split"), on="study_id")


def run_tokenizer(ctx) -> dict:
    """Stage `tokenizer`: WordPiece on MeCab words of the training reports (params `text`), or a local pretrained
    tokenizer (text.pretrained_dir) copied, into data/tokenizer; returns metrics/tokenizer.json."""
    import polars as pl

    cfg, out = ctx.text, ctx.out("tokenizer")
    studies = split_reports(ctx.raw, ctx.data / "split" / "studies.parquet")
    train = studies.filter(pl.col("split") == "train")["report"].to_list()
    valid = studies.filter(pl.col("split") == "valid")["report"].to_list()
    if cfg.pretrained_dir:
        out.mkdir(parents=True, exist_ok=True)
        load_tokenizer(ctx.root / cfg.pretrained_dir).save_pretrained(str(out))
    else:
        train_tokenizer(train, out, cfg.vocab_size, cfg.max_length)
    tok = load_tokenizer(out)
    lengths = token_lengths(tok, studies["report"].to_list())
    return {"vocab_size": len(tok), "unk_rate_train": unk_rate(tok, train),
            "unk_rate_valid": unk_rate(tok, valid) if valid else None,
            "truncated": int(sum(n > cfg.max_length for n in lengths)), "max_length": cfg.max_length,
            "longest": int(max(lengths)), "source": cfg.pretrained_dir or "trained on the training split"}
