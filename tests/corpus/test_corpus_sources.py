"""Reading documents: every source kind, its order and ids, and its one-line errors."""

from __future__ import annotations

import datasets
import pytest
from corpus_helpers import write_docs

from headsurgeon.corpus import CorpusSpec, builtin, load_documents, sources
from headsurgeon.corpus.builtin import split_fortunes
from headsurgeon.corpus.rest import rest_to_prose
from headsurgeon.corpus.sources import parse_hub_source
from headsurgeon.errors import HeadsurgeonError


def test_folder_is_recursive_sorted_and_text_only(tmp_path):
    write_docs(tmp_path, {"b/x.md": "bee", "a.txt": "ay", "c.rst": "sea", "z.bin": "no", ".hidden.txt": "no", ".git/h.txt": "no", "e.txt": "  \n"})
    (tmp_path / "b" / "y.jsonl").write_text('{"text": "why"}\n\n{"text": "why not"}\n')
    docs = list(load_documents(str(tmp_path)))
    assert [d.text for d in docs] == ["ay", "bee", "why", "why not", "sea"]  # empty e.txt skipped
    assert [d.id for d in docs][:2] == ["a.txt", "b/x.md"]
    assert docs[2].id.startswith("b/y.jsonl@")


def test_single_text_file_is_split_into_paragraph_documents(tmp_path):
    p = tmp_path / "book.txt"
    p.write_text("First para\nstill first.\n\n\nSecond.\n  \nThird.\n")
    docs = list(load_documents(str(p)))
    assert [d.text for d in docs] == ["First para\nstill first.", "Second.", "Third."]
    assert len({d.id for d in docs}) == 3


def test_jsonl_text_field_and_max_documents(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"body": "one", "n": 1}\n{"body": "two"}\n{"body": null}\n{"body": "three"}\n')
    docs = list(load_documents(CorpusSpec(str(p), text_field="body")))
    assert [d.text for d in docs] == ["one", "two", "three"]
    assert [d.text for d in load_documents(CorpusSpec(str(p), text_field="body", max_documents=2))] == ["one", "two"]


def test_entry_ids_do_not_depend_on_other_entries(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"text": "alpha"}\n{"text": "beta"}\n')
    before = {d.text: d.id for d in load_documents(str(p))}
    p.write_text('{"text": "new first"}\n{"text": "alpha"}\n{"text": "beta"}\n')
    after = {d.text: d.id for d in load_documents(str(p))}
    assert after["alpha"] == before["alpha"] and after["beta"] == before["beta"]


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        ('{"text": "ok"}\n{not json\n', r"c\.jsonl:2 is not valid JSON"),
        ('{"text": "ok"}\n{"body": "x"}\n', r"c\.jsonl:2 has no 'text' field \(it has: body\)"),
        ('[1, 2]\n', r"c\.jsonl:1 has no 'text' field"),
        ('{"text": 3}\n', r"c\.jsonl:1: field 'text' is a int"),
    ],
)
def test_bad_jsonl_lines(tmp_path, content, pattern):
    p = tmp_path / "c.jsonl"
    p.write_text(content)
    with pytest.raises(HeadsurgeonError, match=pattern):
        list(load_documents(str(p)))


def test_missing_and_unsupported_sources(tmp_path):
    with pytest.raises(HeadsurgeonError, match="does not exist; pass a text file"):
        load_documents(str(tmp_path / "nope.txt"))
    (tmp_path / "t.csv").write_text("a,b")
    with pytest.raises(HeadsurgeonError, match="unsupported type '.csv'"):
        load_documents(str(tmp_path / "t.csv"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(HeadsurgeonError, match="holds no text files"):
        load_documents(str(tmp_path / "empty"))
    with pytest.raises(HeadsurgeonError, match="heldout_fraction must be in"):
        CorpusSpec("x", heldout_fraction=1.0)
    with pytest.raises(HeadsurgeonError, match="max_tokens must be a positive"):
        CorpusSpec("x", max_tokens=0)


def test_saved_dataset_folder(tmp_path):
    datasets.Dataset.from_dict({"text": ["uno", "", "dos"], "k": [1, 2, 3]}).save_to_disk(str(tmp_path / "ds"))
    assert [d.text for d in load_documents(str(tmp_path / "ds"))] == ["uno", "dos"]
    with pytest.raises(HeadsurgeonError, match="has no column 'body' \\(it has: text, k\\)"):
        load_documents(CorpusSpec(str(tmp_path / "ds"), text_field="body"))
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["a"]})}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(HeadsurgeonError, match="DatasetDict with splits train; pass one split's folder"):
        load_documents(str(tmp_path / "dd"))


def test_hub_reference_parsing_and_offline_error(monkeypatch):
    assert parse_hub_source("hf:wikitext") == ("wikitext", None, "train")
    assert parse_hub_source("hf:wikitext:wikitext-2-raw-v1") == ("wikitext", "wikitext-2-raw-v1", "train")
    assert parse_hub_source("hf:wikitext:test") == ("wikitext", None, "test")
    assert parse_hub_source("hf:c4:en:validation[:1%]") == ("c4", "en", "validation[:1%]")
    with pytest.raises(HeadsurgeonError, match="not a hub data set reference"):
        parse_hub_source("hf:")
    monkeypatch.setattr(sources, "_hub_offline", lambda: True)
    with pytest.raises(HeadsurgeonError, match="looks offline.*save_to_disk") as err:
        load_documents("hf:wikitext:wikitext-2-raw-v1:test")
    assert "\n" not in str(err.value)


def test_missing_debian_packages_are_named(tmp_path, monkeypatch):
    monkeypatch.setattr(builtin, "PYTHON_DOCS_DIR", tmp_path / "no-docs")
    monkeypatch.setattr(builtin, "FORTUNES_DIR", tmp_path / "no-fortunes")
    with pytest.raises(HeadsurgeonError, match="apt-get install python3.11-doc`, or pass your own text"):
        load_documents("python-docs")
    with pytest.raises(HeadsurgeonError, match="apt-get install fortunes`"):
        load_documents("fortunes")


def test_fortunes_reader_skips_indexes_links_and_subfolders(tmp_path, monkeypatch):
    write_docs(tmp_path, {"wit": "One.\n%\n_\bbold\bd and\n  indented -- A\n%\n\n%\nLast.\n", "wit.dat": "bin", "off/rude": "x\n%\ny\n"})
    (tmp_path / "wit.u8").symlink_to(tmp_path / "wit")
    monkeypatch.setattr(builtin, "FORTUNES_DIR", tmp_path)
    docs = list(load_documents("fortunes"))
    assert [d.text for d in docs] == ["One.", "bold and\n  indented -- A", "Last."]
    assert all(d.id.startswith("fortunes/wit@") for d in docs)
    assert split_fortunes("a\n%\nb") == ["a", "b"]


def test_rest_to_prose_keeps_sentences_and_drops_code():
    src = """.. _label:

Title with :func:`~os.path.join`
================================

.. module:: spam
   :synopsis: Spam.

Use ``x`` and :ref:`the guide <guide>` or *stress* **this**, see :pep:`8`.
It continues here. For example::

   code_here = 1

>>> doctest()
42

.. function:: f(a)

   Does *things*.

   .. versionadded:: 3.9

.. note:: Be careful.

* item one
* item two
"""
    out = rest_to_prose(src)
    assert out.splitlines() == [
        "Title with join", "",
        "Use x and the guide or stress this, see PEP 8. It continues here. For example:", "",
        "Does things.", "", "New in version 3.9.", "", "Be careful.", "",
        "* item one", "* item two",
    ]  # fmt: skip


def test_hub_source_streams_rows_when_online(monkeypatch):
    """The online path, with the hub replaced by a list of rows (tests never use the network)."""
    calls = []

    def fake_load_dataset(name, config, *, split, streaming):
        calls.append((name, config, split, streaming))
        return [{"text": "first"}, {"text": None}, {"text": "second"}]

    monkeypatch.setattr(sources, "_hub_offline", lambda: False)
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    docs = list(load_documents("hf:someone/corpus:en:validation"))
    assert [d.text for d in docs] == ["first", "second"] and docs[0].id.startswith("hf:someone/corpus:en:validation@")
    assert calls == [("someone/corpus", "en", "validation", True)]
    with pytest.raises(HeadsurgeonError, match="has no column 'body' \\(it has: text\\)"):
        list(load_documents(CorpusSpec("hf:someone/corpus", text_field="body")))
