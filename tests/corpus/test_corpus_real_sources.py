"""The built-in offline corpora read real Debian text (skipped where the packages are missing)."""

from __future__ import annotations

import re
from itertools import islice

import pytest

from headsurgeon.corpus import CorpusSpec, build_corpus, builtin, load_documents


@pytest.mark.skipif(not builtin.PYTHON_DOCS_DIR.is_dir(), reason="Debian python3.11-doc is not installed")
def test_python_docs_reads_as_prose(tok, cache):
    docs = list(islice(load_documents("python-docs"), 60))
    assert len(docs) == 60 and docs[0].id.startswith("python-docs/")
    text = "\n".join(d.text for d in docs)
    for markup in (":func:`", ":ref:`", ">>> ", "``", "::\n", "====="):
        assert markup not in text, markup
    assert not re.search(r"(?m)^(\* )?\.\. ", text)  # no directive, comment or target lines
    assert text.count(". ") > 500  # sentences survive
    c = build_corpus(tok, CorpusSpec("python-docs", max_documents=40), seq_len=256, cache_dir=cache, progress=False)
    assert c.train.shape[0] > 10 and c.heldout.shape[0] >= 1 and c.info["kind"] == "python-docs"


@pytest.mark.skipif(not builtin.FORTUNES_DIR.is_dir(), reason="Debian fortunes is not installed")
def test_fortunes_entries():
    docs = list(load_documents("fortunes"))
    assert len(docs) > 10_000
    assert all("\x08" not in d.text and all(line.strip() != "%" for line in d.text.splitlines()) for d in docs)
    assert any("BODY!" in d.text for d in docs)  # "____\b\b\b\bBODY" (underlined) lost its overstrike
    assert any("Mark Twain" in d.text for d in docs)
