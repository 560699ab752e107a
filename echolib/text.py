"""Report text: normalisation and the Japanese tokenizer (MeCab word splitting + WordPiece).

`train_tokenizer(reports, out_dir)` learns a WordPiece vocabulary on MeCab (fugashi + unidic-lite) words of the
*training* reports and saves a transformers `BertJapaneseTokenizer` directory that round-trips through
`AutoTokenizer.from_pretrained(out_dir)`. Every character seen in training enters the vocabulary, so unseen
characters, not unseen words, are what produces [UNK]. `load_tokenizer(dir)` never reaches a hub.
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

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
    """Train WordPiece on MeCab words of `reports` and save a BertJapaneseTokenizer directory."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import BertJapaneseTokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    words = mecab_words(reports)
    alphabet = sorted({ch for ws in words for w in ws for ch in w})
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, initial_alphabet=alphabet,
                                        limit_alphabet=len(alphabet) + 10, continuing_subword_prefix="##")
    tok.train_from_iterator((" ".join(ws) for ws in words), trainer=trainer)
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    tokens = [t for t, _ in vocab]
    for ch in alphabet:  # every training character, alone and as a continuation piece
        for piece in (ch, "##" + ch):
            if piece not in tok.get_vocab():
                tokens.append(piece)
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


def encode(tokenizer, texts: list[str], max_length: int):
    """input_ids / attention_mask tensors (padded to max_length) and how many reports were truncated."""
    texts = [normalize(t) for t in texts]
    full = tokenizer(texts, add_special_tokens=True)["input_ids"]
    truncated = sum(len(ids) > max_length for ids in full)
    enc = tokenizer(texts, max_length=max_length, truncation=True, padding="max_length", return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"], truncated


def unk_rate(tokenizer, texts: list[str]) -> float:
    """Share of [UNK] among all tokens of `texts`."""
    ids = tokenizer([normalize(t) for t in texts], add_special_tokens=False)["input_ids"]
    total = sum(len(x) for x in ids)
    unk = sum(x.count(tokenizer.unk_token_id) for x in ids)
    return unk / max(total, 1)


def token_lengths(tokenizer, texts: list[str]) -> list[int]:
    return [len(x) for x in tokenizer([normalize(t) for t in texts], add_special_tokens=True)["input_ids"]]


def save_stats(path: str | Path, stats: dict) -> None:
    Path(path).write_text(json.dumps(stats, indent=2, ensure_ascii=False))
