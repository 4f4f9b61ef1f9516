"""Tokenising, splitting and packing: shapes, EOS placement, determinism, split stability and
disjointness, caps, caching, evaluation sets and every build error."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from corpus_helpers import marked_docs, write_docs

from headsurgeon.corpus import CorpusSpec, build_corpus, build_eval_set
from headsurgeon.corpus.split import select, unit_hash
from headsurgeon.corpus.tokenize import tokenize_source
from headsurgeon.errors import HeadsurgeonError
from headsurgeon.models.tiny import byte_tokenizer

EOS = 257


def _markers(tok, rows: torch.Tensor) -> set[str]:
    text = tok.decode(rows.flatten().tolist(), skip_special_tokens=True)
    return set(re.findall(r"d\d{3}\.", text))


def test_packing_shape_and_eos_after_every_document(tmp_path, cache):
    texts = {f"d{i}.txt": f"doc {i} " + "x" * (10 - len(str(i))) for i in range(4)}  # 15 bytes each
    write_docs(tmp_path / "c", texts)
    for tokenizer, first in ((byte_tokenizer(), None), (byte_tokenizer(add_bos=True), 256)):
        seq_len = 16 if first is None else 17
        c = build_corpus(tokenizer, CorpusSpec(str(tmp_path / "c"), heldout_fraction=0), seq_len=seq_len, cache_dir=cache, progress=False)
        assert c.train.shape == (4, seq_len) and c.train.dtype == torch.long and c.heldout.shape == (0, seq_len)
        assert (c.train[:, -1] == EOS).all() and (c.train[:, :-1] != EOS).all()
        if first is not None:
            assert (c.train[:, 0] == first).all()
        decoded = [tokenizer.decode(row.tolist(), skip_special_tokens=True) for row in c.train]
        assert decoded == list(texts.values())
        assert c.info["dropped_remainder_tokens"] == 0 and c.info["tokens"] == 4 * seq_len


def test_no_eos_when_disabled_and_remainder_dropped(tmp_path, cache, tok):
    write_docs(tmp_path / "c", {"a.txt": "a" * 10, "b.txt": "b" * 10})
    c = build_corpus(tok, CorpusSpec(str(tmp_path / "c"), heldout_fraction=0), seq_len=6, add_eos_between_docs=False, cache_dir=cache, progress=False)
    assert c.train.shape == (3, 6) and (c.train != EOS).all()
    assert tok.decode(c.train.flatten().tolist()) == "a" * 10 + "b" * 8
    assert c.info["dropped_remainder_tokens"] == 2


def test_deterministic_across_runs_and_cache_dirs(tmp_path, tok):
    folder = write_docs(tmp_path / "c", marked_docs(40))
    a = build_corpus(tok, str(folder), seq_len=32, cache_dir=tmp_path / "c1", progress=False)
    b = build_corpus(tok, str(folder), seq_len=32, cache_dir=tmp_path / "c2", progress=False)
    again = build_corpus(tok, str(folder), seq_len=32, cache_dir=tmp_path / "c1", progress=False)  # from cache
    for other in (b, again):
        assert torch.equal(a.train, other.train) and torch.equal(a.heldout, other.heldout)
        assert other.info["sha256"] == a.info["sha256"]
    other_seed = build_corpus(tok, str(folder), seq_len=32, seed=1, cache_dir=tmp_path / "c1", progress=False)
    assert other_seed.info["sha256"] != a.info["sha256"]


def test_cache_notices_changed_files(tmp_path, cache, tok):
    folder = write_docs(tmp_path / "c", marked_docs(20))
    a = build_corpus(tok, str(folder), seq_len=16, cache_dir=cache, progress=False)
    (folder / "d000.txt").write_text("changed text, longer than before " * 3)
    b = build_corpus(tok, str(folder), seq_len=16, cache_dir=cache, progress=False)
    assert b.info["tokens"] != a.info["tokens"] and b.info["sha256"] != a.info["sha256"]


def test_split_is_disjoint_by_document(tmp_path, cache, tok):
    folder = write_docs(tmp_path / "c", marked_docs(60))
    c = build_corpus(tok, CorpusSpec(str(folder), heldout_fraction=0.25), seq_len=21, cache_dir=cache, progress=False)
    train, held = _markers(tok, c.train), _markers(tok, c.heldout)
    assert train and held and not (train & held)
    expected_held = {f"d{i:03d}." for i in range(60) if unit_hash(0, f"d{i:03d}.txt") < 0.25}
    assert held <= expected_held and len(expected_held - held) <= 1  # at most the remainder's document is cut off
    assert c.info["train_documents"] + c.info["heldout_documents"] == 60 == c.info["documents"]


def test_adding_documents_never_moves_existing_ones(tmp_path, cache, tok):
    folder = write_docs(tmp_path / "c", marked_docs(50))
    spec = CorpusSpec(str(folder), heldout_fraction=0.2)

    def sides() -> dict[str, bool]:
        table = tokenize_source(tok, spec, cache_dir=cache, progress=False)
        sel = select(table, heldout_fraction=0.2, seed=3, seq_len=8, max_tokens=None)
        return dict(zip(table.ids, sel.heldout.tolist()))

    before = sides()
    write_docs(folder, {f"new{i}.txt": f"new {i} " * 5 for i in range(30)})
    after = sides()
    assert len(after) == 80 and all(after[k] == v for k, v in before.items())
    assert 0 < sum(before.values()) < 50


def test_heldout_fallback_guarantees_one_sequence(tmp_path, cache, tok):
    folder = write_docs(tmp_path / "c", marked_docs(8))
    ids = [f"d{i:03d}.txt" for i in range(8)]
    seed = next(s for s in range(100) if min(unit_hash(s, i) for i in ids) > 0.05)  # nothing held out by the hash alone
    c = build_corpus(tok, CorpusSpec(str(folder), heldout_fraction=0.05), seq_len=40, seed=seed, cache_dir=cache, progress=False)
    assert c.heldout.shape[0] >= 1 and c.info["split"]["fallback"] is True
    assert c.info["split"]["threshold"] > 0.05 and c.info["heldout_documents"] >= 1
    assert not (_markers(tok, c.train) & _markers(tok, c.heldout))


def test_duplicates_are_dropped_before_the_split(tmp_path, cache, tok):
    docs = marked_docs(10)
    docs["copy.txt"] = docs["d003.txt"]
    folder = write_docs(tmp_path / "c", docs)
    c = build_corpus(tok, str(folder), seq_len=8, cache_dir=cache, progress=False)
    assert c.info["duplicates_dropped"] == 1 and c.info["documents"] == 10


def test_caps(tmp_path, cache, tok):
    folder = write_docs(tmp_path / "c", marked_docs(30))
    c = build_corpus(tok, CorpusSpec(str(folder), max_documents=12), seq_len=8, cache_dir=cache, progress=False)
    assert c.info["documents"] == 12 and _markers(tok, torch.cat([c.train, c.heldout])) <= {f"d{i:03d}." for i in range(12)}
    c = build_corpus(tok, CorpusSpec(str(folder), max_tokens=1000), seq_len=8, cache_dir=cache, progress=False)
    assert c.info["tokens"] == 1000 and c.info["truncated_by_max_tokens"]
    assert c.train.numel() + c.heldout.numel() + c.info["dropped_remainder_tokens"] == 1000


def test_jsonl_and_saved_dataset_build_the_same_stream(tmp_path, cache, tok):
    import datasets

    texts = [f"record {i} " * 4 for i in range(20)]
    (tmp_path / "c.jsonl").write_text("".join(f'{{"text": "{t}"}}\n' for t in texts))
    datasets.Dataset.from_dict({"text": texts}).save_to_disk(str(tmp_path / "ds"))
    a = build_corpus(tok, CorpusSpec(str(tmp_path / "c.jsonl"), heldout_fraction=0), seq_len=16, cache_dir=cache, progress=False)
    b = build_corpus(tok, CorpusSpec(str(tmp_path / "ds"), heldout_fraction=0), seq_len=16, cache_dir=cache, progress=False)
    assert torch.equal(a.train, b.train) and a.info["kind"] == "jsonl" and b.info["kind"] == "datasets-folder"


def test_eval_set_spreads_over_the_stream(tmp_path, cache, tok):
    folder = write_docs(tmp_path / "c", marked_docs(40))
    full = build_eval_set(tok, str(folder), seq_len=16, max_sequences=None, cache_dir=cache, progress=False)
    few = build_eval_set(tok, str(folder), seq_len=16, max_sequences=4, cache_dir=cache, progress=False)
    n = full.sequences.shape[0]
    picks = np.linspace(0, n - 1, 4).round().astype(int)
    assert few.sequences.shape == (4, 16) and torch.equal(few.sequences, full.sequences[picks])
    assert few.info["available_sequences"] == n and full.info["documents"] == 40


@pytest.mark.parametrize(
    ("files", "kwargs", "pattern"),
    [
        ({"a.txt": " \n", "b.md": "\n\n"}, {}, r"has no text \(0 non-empty documents\)"),
        ({"a.txt": "short"}, {"heldout_fraction": 0, "seq_len": 64}, r"has 6 tokens in 1 documents; its training split has 6 tokens, but one sequence of seq_len=64 needs 64"),
        ({"a.txt": "x" * 200}, {"seq_len": 64}, r"held-out split has 0 tokens, but one held-out sequence of seq_len=64 needs 64"),
        ({"a.txt": "x" * 200}, {"seq_len": 1}, r"seq_len must be at least 2"),
    ],
)
def test_build_errors(tmp_path, cache, tok, files, kwargs, pattern):
    folder = write_docs(tmp_path / "c", files)
    seq_len = kwargs.pop("seq_len", 8)
    with pytest.raises(HeadsurgeonError, match=pattern) as err:
        build_corpus(tok, CorpusSpec(str(folder), **kwargs), seq_len=seq_len, cache_dir=cache, progress=False)
    assert "\n" not in str(err.value)


def test_errors_raised_inside_the_generator_stay_one_line(tmp_path, cache, tok):
    (tmp_path / "c.jsonl").write_text('{"text": "fine"}\n{broken\n')
    with pytest.raises(HeadsurgeonError, match=r"c\.jsonl:2 is not valid JSON"):
        build_corpus(tok, str(tmp_path / "c.jsonl"), seq_len=4, cache_dir=cache, progress=False)
    with pytest.raises(HeadsurgeonError, match="does not exist"):
        build_corpus(tok, str(tmp_path / "missing"), seq_len=4, cache_dir=cache, progress=False)
    with pytest.raises(HeadsurgeonError, match="evaluation corpus .* has 5 tokens"):
        (tmp_path / "e.txt").write_text("tiny")
        build_eval_set(tok, str(tmp_path / "e.txt"), seq_len=16, max_sequences=2, cache_dir=cache, progress=False)


def test_nothing_is_written_to_the_working_directory(tmp_path, monkeypatch, tok):
    folder = write_docs(tmp_path / "c", marked_docs(10))
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    build_corpus(tok, str(folder), seq_len=8, progress=False)  # default cache dir (a temp HEADSURGEON_CACHE here)
    assert list(work.iterdir()) == []


def test_corpora_can_live_apart_from_the_model_cache(tmp_path, monkeypatch, tok):
    """``$HEADSURGEON_CORPUS_CACHE`` moves the tokenised corpora (the test suite's own runs use it
    so that nothing lands in the user's cache); ``cache_dir=`` still wins."""
    from headsurgeon.corpus.tokenize import corpus_cache_dir
    from headsurgeon.models.cache import cache_root

    assert corpus_cache_dir() == cache_root() / "corpora"
    monkeypatch.setenv("HEADSURGEON_CORPUS_CACHE", str(tmp_path / "corpora-elsewhere"))
    folder = write_docs(tmp_path / "c", marked_docs(10))
    build_corpus(tok, str(folder), seq_len=8, progress=False)
    assert any((tmp_path / "corpora-elsewhere").iterdir()) and not (cache_root() / "corpora").exists()
    assert corpus_cache_dir(tmp_path / "mine") == tmp_path / "mine"
