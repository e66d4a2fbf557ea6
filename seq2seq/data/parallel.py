"""Parallel corpora as Hugging Face `datasets` tables with columns `src` and `tgt` (stripped text).

Local corpora become Arrow tables. A folder of aligned text files, one sentence per line, is a corpus too:
FOLDER/train.en and FOLDER/train.fr hold split `train` (data.corpus: /data/wmt14-en-fr). Any other name is read from
the Hugging Face hub (`translation` column, as in `wmt14` / `fr-en`), which needs the internet.

A split may be qualified by its corpus, `corpus/split`; that corpus then replaces the one asked for:

    load_parallel("multi30k", "tatoeba/test", "en", "fr")               ->  Tatoeba's test split
    load_parallel(["multi30k", "tatoeba"], "val", "en", "fr")           ->  Multi30k's val, then Tatoeba's
    load_parallel(["multi30k", "tatoeba"], "test_2016_flickr", ...)     ->  DataError: Tatoeba has no such split
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path

import datasets

from seq2seq.data.corpora import DataError, corpus_file, read_lines

LOCAL_CORPORA = {
    "multi30k": ("train", "val", "test_2016_flickr", "test_2017_flickr"),
    "tatoeba": ("train", "val", "test"),
}

# Tatoeba has no split. Each *distinct English sentence* goes to one split by a hash of its text, so all the French
# translations of a sentence land together and the split does not depend on the order of the file.
TATOEBA_HELD_OUT_PER_MILLE = {"val": 15, "test": 15}


def load_parallel(
    corpus: str | Sequence[str], split: str, src_lang: str, tgt_lang: str, hub_config: str = ""
) -> datasets.Dataset:
    """The pairs of `split`: of `corpus`, or of each corpus of a list one after the other, or of the corpus that
    qualifies it (`tatoeba/test`)."""
    tables = [_load_one(c, s, src_lang, tgt_lang, hub_config) for c, s in split_parts(corpus, split)]
    return tables[0] if len(tables) == 1 else datasets.concatenate_datasets(tables)


def corpus_names(corpus: str | Sequence[str]) -> tuple[str, ...]:
    """A recipe's data.corpus as a tuple of names: one corpus, or the corpora of a mixture."""
    return (corpus,) if isinstance(corpus, str) else tuple(corpus)


def split_parts(corpus: str | Sequence[str], split: str) -> list[tuple[str, str]]:
    """(corpus, split) of each part of `split`: the corpus that qualifies it (`tatoeba/val` -> tatoeba, val; a hub
    id keeps its own slash: `owner/name/test`), else `split` of every corpus of `corpus`, each of which must have it."""
    name, qualified, part = split.rpartition("/")
    if qualified:
        if not name.strip() or not part.strip():
            raise DataError(f"split {split!r} must be a split name (val) or a qualified one, corpus/split (tatoeba/val)")
        return [(name, part)]
    corpora = corpus_names(corpus)
    lacking = [c for c in corpora if c in LOCAL_CORPORA and split not in LOCAL_CORPORA[c]]
    if lacking and len(corpora) > 1:
        raise DataError(f"split {split!r} is not in every corpus ({', '.join(lacking)} ha{'s' if len(lacking) == 1 else 've'} "
                        f"none); name one corpus's split as corpus/split: {', '.join(qualified_splits(corpora))}")
    return [(c, split) for c in corpora]


def qualified_splits(corpora: Sequence[str]) -> list[str]:
    """Every corpus/split name of `corpora` (a hub dataset's splits are unknown until it is loaded: NAME/<split>)."""
    return [f"{c}/{s}" for c in corpora for s in LOCAL_CORPORA.get(c, ("<split>",))]


def text_files(corpus: str, split: str, src_lang: str, tgt_lang: str) -> tuple[Path, Path] | None:
    """The two files of `split` when `corpus` is Multi30k or a folder of aligned text files (FOLDER/split.en,
    FOLDER/split.fr); None for any other corpus."""
    if corpus == "multi30k":
        _check_split(corpus, split)
        return corpus_file("multi30k", f"{split}.{src_lang}"), corpus_file("multi30k", f"{split}.{tgt_lang}")
    folder = Path(corpus).expanduser()
    if corpus in LOCAL_CORPORA or not folder.is_dir():
        return None
    src, tgt = folder / f"{split}.{src_lang}", folder / f"{split}.{tgt_lang}"
    if src.is_file() and tgt.is_file():
        return src, tgt
    splits = sorted({p.stem for p in folder.glob(f"*.{src_lang}")} & {p.stem for p in folder.glob(f"*.{tgt_lang}")})
    if src.is_file() or tgt.is_file() or splits:
        raise DataError(f"the text corpus {folder} has no split {split!r}: it needs {src.name} and {tgt.name}, one "
                        f"sentence per line; its splits are {', '.join(splits) or 'none'}")  # fmt: skip
    return None  # a folder of other files: the hub's loader reads it (JSON lines, Parquet, ...)


def pair_chunks(corpus: str, split: str, src_lang: str, tgt_lang: str, hub_config: str = "", size: int = 10_000
                ) -> Iterator[tuple[list[str], list[str]]]:  # fmt: skip
    """The pairs of `split` of one corpus, `size` at a time, as (sources, targets): text files are read line by
    line, so that a corpus larger than memory passes through in bounded memory."""
    files = text_files(corpus, split, src_lang, tgt_lang)
    if files is None:
        table = _load_one(corpus, split, src_lang, tgt_lang, hub_config)  # Arrow: memory-mapped from disk
        for start in range(0, len(table), size):
            part = table[start : start + size]
            yield part["src"], part["tgt"]
        return
    src_path, tgt_path = files
    with open(src_path, "rb") as src_file, open(tgt_path, "rb") as tgt_file:
        src, tgt, number = [], [], 0
        for number, (s, t) in enumerate(itertools.zip_longest(src_file, tgt_file), start=1):
            if s is None or t is None:
                short, long = (src_path, tgt_path) if s is None else (tgt_path, src_path)
                raise DataError(f"misaligned corpus: {short} has {number - 1} lines but {long} has more; line i of "
                                "one must translate line i of the other")  # fmt: skip
            src.append(_text(s, src_path, number))
            tgt.append(_text(t, tgt_path, number))
            if len(src) == size:
                yield src, tgt
                src, tgt = [], []
        if src:
            yield src, tgt


def _text(raw: bytes, path: Path, number: int) -> str:
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}, line {number}: invalid UTF-8 ({e.reason} at byte {e.start})") from None


def _load_one(corpus: str, split: str, src_lang: str, tgt_lang: str, hub_config: str) -> datasets.Dataset:
    files = text_files(corpus, split, src_lang, tgt_lang)
    if files is not None:
        return datasets.Dataset.from_dict(dict(zip(("src", "tgt"), read_aligned(*files))))
    if corpus == "tatoeba":
        _check_split(corpus, split)
        return datasets.Dataset.from_dict(tatoeba_split(corpus_file("tatoeba-fra-eng", "fra.txt"), split, src_lang))
    return _load_hub(corpus, hub_config, split, src_lang, tgt_lang)


def _check_split(corpus: str, split: str) -> None:
    if split not in LOCAL_CORPORA[corpus]:
        raise DataError(f"corpus {corpus!r} has no split {split!r}; its splits are {', '.join(LOCAL_CORPORA[corpus])}")


def read_aligned(src_path: Path, tgt_path: Path) -> tuple[list[str], list[str]]:
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        raise DataError(
            f"misaligned corpus: {src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}; "
            "line i of one must translate line i of the other"
        )
    return src, tgt


def tatoeba_split(path: Path, split: str, src_lang: str) -> dict[str, list[str]]:
    """The `split` part of Tatoeba's `English<TAB>French` file, split by distinct English sentence."""
    src, tgt = [], []
    for number, line in enumerate(read_lines(path), start=1):
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise DataError(f"{path}, line {number}: expected 'English<TAB>French', got {line[:80]!r}")
        en, fr = fields[0].strip(), fields[1].strip()
        if _tatoeba_bucket(en) == split:
            src.append(en if src_lang == "en" else fr)
            tgt.append(fr if src_lang == "en" else en)
    return {"src": src, "tgt": tgt}


def _tatoeba_bucket(english: str) -> str:
    h = int.from_bytes(hashlib.sha1(english.encode("utf-8")).digest()[:4], "big") % 1000
    if h < TATOEBA_HELD_OUT_PER_MILLE["val"]:
        return "val"
    if h < TATOEBA_HELD_OUT_PER_MILLE["val"] + TATOEBA_HELD_OUT_PER_MILLE["test"]:
        return "test"
    return "train"


def _load_hub(name: str, config: str, split: str, src_lang: str, tgt_lang: str) -> datasets.Dataset:
    try:
        ds = datasets.load_dataset(name, config or None, split=split)
    except Exception as e:  # noqa: BLE001 - the hub raises many kinds; all mean "cannot get it"
        raise DataError(
            f"{name!r} is neither a local corpus ({', '.join(LOCAL_CORPORA)}), nor a folder of text files "
            f"(FOLDER/{split}.{src_lang}, FOLDER/{split}.{tgt_lang}), nor a loadable Hugging Face dataset "
            f"({type(e).__name__}: {e})"
        ) from None
    if "translation" not in ds.column_names:
        raise DataError(f"hub dataset {name!r} has no 'translation' column (columns: {ds.column_names})")

    def to_pair(batch: dict) -> dict:
        return {
            "src": [t[src_lang].strip() for t in batch["translation"]],
            "tgt": [t[tgt_lang].strip() for t in batch["translation"]],
        }

    return ds.map(to_pair, batched=True, remove_columns=ds.column_names)
