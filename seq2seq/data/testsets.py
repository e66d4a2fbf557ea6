"""Test sets named on the command line rather than by a recipe: aligned files, and sacreBLEU's own sets by name.

sacreBLEU's sets are read through its dataset API: files under $SACREBLEU (default ~/.sacrebleu), downloaded there
once where they are missing.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import tarfile
from pathlib import Path

from seq2seq.cli import InputError, UsageError, decode_lines
from seq2seq.data.corpora import DataError


def read_text_lines(path: Path, what: str) -> list[str]:
    """The lines of a UTF-8 file, without their line ends; InputError names the line that is not UTF-8."""
    with open(path, "rb") as f:
        try:
            return list(decode_lines(f))
        except InputError as e:
            raise InputError(f"{what} {path}: {e}") from None


def file_pair(src: Path, ref: Path) -> tuple[list[str], list[list[str]]]:
    """The source lines and the one reference set of --src and --ref, which must have as many lines."""
    sources, references = read_text_lines(src, "--src"), read_text_lines(ref, "--ref")
    if len(sources) != len(references):
        raise UsageError(f"--src {src} has {len(sources)} lines and --ref {ref} has {len(references)}: they must "
                         "align, one reference line per source line")  # fmt: skip
    return sources, [references]


def sacrebleu_dataset(name: str, langpair: str | None):
    """sacreBLEU's test set `name` (a sacrebleu.dataset Dataset); UsageError for a name it does not know, or a
    language pair the test set does not have."""
    from sacrebleu.dataset import DATASETS

    if name not in DATASETS:
        near = difflib.get_close_matches(name, list(DATASETS), n=3)
        raise UsageError(f"--sacrebleu {name}: no such sacreBLEU test set" + (
            f"; did you mean {', '.join(near)}?" if near else " (sacrebleu --list names them)"))  # fmt: skip
    dataset = DATASETS[name]
    if langpair is not None and langpair not in dataset.langpairs:
        raise UsageError(f"sacreBLEU test set {name} has no pair {langpair}; it has {', '.join(dataset.langpairs)}")
    return dataset


def sacrebleu_test_set(name: str, langpair: str) -> tuple[list[str], list[list[str]]]:
    """The source lines and the reference sets of sacreBLEU's test set `name` in `langpair`, through sacreBLEU's
    dataset API: files under $SACREBLEU (default ~/.sacrebleu), downloaded there first where they are missing."""
    from sacrebleu.utils import SACREBLEU_DIR, smart_open

    dataset = sacrebleu_dataset(name, langpair)
    quiet = logging.getLogger("sacrebleu")
    level, quiet.level = quiet.level, logging.CRITICAL  # a failed download is this one line, not sacreBLEU's log
    try:
        source_file, reference_files = dataset.get_source_file(langpair), dataset.get_reference_files(langpair)
    except (OSError, SystemExit, EOFError, tarfile.TarError) as e:  # sacreBLEU exits on a bad checksum
        reason = "a file failed its checksum" if isinstance(e, SystemExit) else " ".join(str(e).split())
        raise DataError(f"sacreBLEU test set {name} ({langpair}) is not in {SACREBLEU_DIR} and could not be "
                        f"downloaded ({reason}): it needs the network once, or give its files with --src FILE "
                        "--ref FILE") from None  # fmt: skip
    finally:
        quiet.level = level
    with contextlib.ExitStack() as stack:
        sources = [line.strip() for line in stack.enter_context(smart_open(source_file))]
        references = [[line.strip() for line in stack.enter_context(smart_open(f))] for f in reference_files]
    return sources, references
