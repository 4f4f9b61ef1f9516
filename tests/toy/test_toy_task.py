"""Bigram-Backcopy data: the rule, its checker, seeding, statistics and text sources."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.toy import task as task_module
from headsurgeon.toy.task import BigramBackcopy, build_task, check_rule


def _gen(task, seed=0, batch=64, length=129):
    return task.generate(batch, length, torch.Generator().manual_seed(seed))


def test_alphabet_and_triggers(bb_task):
    a = bb_task.alphabet
    assert len(a) == 33 and a[-1] == task_module.OTHER  # 32 kept characters + OTHER
    assert bb_task.vocab_size == 34 and bb_task.bos == 33
    # triggers: the 3 most frequent characters once whitespace is skipped
    non_space = [i for i in range(32) if not a[i].isspace()]
    assert list(bb_task.triggers) == non_space[:3]
    freq = bb_task.marginal.numpy()
    assert all(freq[t] >= freq[i] for t in bb_task.triggers for i in non_space[3:])
    assert torch.allclose(bb_task.transition.sum(1), torch.ones(33, dtype=torch.float64))


def test_generated_data_follow_the_rule(bb_task):
    x = _gen(bb_task)
    assert x.shape == (64, 129) and x.dtype == torch.long
    report = check_rule(bb_task, x)
    assert report.ok, report
    assert report.n_copies > 500  # the check looked at many post-trigger positions
    # spell the rule out independently of check_rule
    trig = set(bb_task.triggers)
    for row in x[:8].tolist():
        assert row[0] == bb_task.bos and row[1] not in trig
        for t in range(2, len(row)):
            if row[t - 1] in trig:
                assert row[t] == row[t - 2]


@pytest.mark.parametrize(
    "corruption, counter",
    [("copy", "bad_copies"), ("bos", "bad_bos"), ("bos_inside", "bad_bos"),
     ("first_trigger", "bad_first"), ("impossible", "impossible_bigrams")],
)
def test_corrupted_sequences_fail_the_check(bb_task, corruption, counter):
    x = _gen(bb_task, batch=8).clone()
    assert check_rule(bb_task, x).ok
    trig = bb_task.trigger_mask(x)
    if corruption == "copy":  # change one post-trigger token
        b, t = (trig[:, 1:-1]).nonzero()[0].tolist()
        x[b, t + 2] = (x[b, t + 2] + 1) % bb_task.n_real
    elif corruption == "bos":
        x[3, 0] = 5
    elif corruption == "bos_inside":
        x[3, 40] = bb_task.bos
    elif corruption == "first_trigger":
        x[2, 1] = bb_task.triggers[0]
    else:  # a transition the bigram matrix forbids (zero probability), at non-copy positions
        zero = [(i, j) for i, j in (bb_task.transition == 0).nonzero().tolist()
                if i not in bb_task.triggers and j not in bb_task.triggers]
        assert zero, "the bigram matrix has no zero entry to test with"
        i, j = zero[0]
        x[0, 9:12] = torch.tensor([0, i, j])  # 0 = space: position 10 follows a non-trigger
        x[0, 12] = bb_task.alphabet.index("a") if j != bb_task.alphabet.index("a") else 0
    report = check_rule(bb_task, x)
    assert not report.ok
    assert getattr(report, counter) > 0


def test_generation_is_deterministic_by_seed(bb_task):
    assert torch.equal(_gen(bb_task, seed=7), _gen(bb_task, seed=7))
    assert not torch.equal(_gen(bb_task, seed=7), _gen(bb_task, seed=8))


def test_bigram_statistics_match_the_matrix(bb_task):
    """Non-copy transitions are drawn from the bigram rows: compare empirical frequencies."""
    x = _gen(bb_task, seed=3, batch=512, length=257)
    prev_trig = bb_task.trigger_mask(x)[:, 1:-1]
    cur, nxt = x[:, 1:-1][~prev_trig], x[:, 2:][~prev_trig]
    for token in (0, 4, 10):  # the space and two letters (triggers are always followed by copies)
        sel = nxt[cur == token]
        emp = np.bincount(sel.numpy(), minlength=bb_task.n_real) / len(sel)
        exp = bb_task.transition[token].numpy()
        assert len(sel) > 2000
        assert np.abs(emp - exp).max() < 4 * np.sqrt(exp.max() / len(sel)) + 1e-3
    # the first real token follows the marginal with triggers removed
    first = np.bincount(x[:, 1].numpy(), minlength=bb_task.n_real) / x.shape[0]
    assert first[list(bb_task.triggers)].sum() == 0
    assert first[0] > 0.1  # the space is the most frequent non-trigger token


def test_whitespace_trigger_option():
    text = ("the quick brown fox jumps over the lazy dog. " * 100)
    task = BigramBackcopy.from_text(text, n_chars=20, n_triggers=2, whitespace_triggers=True)
    assert task.alphabet[task.triggers[0]] == " "
    task = BigramBackcopy.from_text(text, n_chars=20, n_triggers=2)
    assert " " not in [task.alphabet[i] for i in task.triggers]
    # every character outside the kept alphabet maps to OTHER
    task = BigramBackcopy.from_text(text, n_chars=5, n_triggers=1)
    assert task.n_real == 6 and task.marginal[-1] > 0


def test_user_text_file(tmp_path):
    p = tmp_path / "text.txt"
    p.write_text("abc abd abe " * 500, encoding="utf-8")
    task = build_task(text_path=str(p), n_chars=6, n_triggers=1)
    assert task.source == str(p)
    assert set(task.alphabet[:-1]) == set("abcde ") - {task.alphabet[-1]}
    assert task.alphabet[task.triggers[0]] in ("a", "b")  # the most frequent non-space
    assert check_rule(task, task.generate(16, 64, torch.Generator().manual_seed(0))).ok


def test_missing_text_gives_one_line_errors(tmp_path, monkeypatch):
    with pytest.raises(HeadsurgeonError, match="does not exist") as err:
        build_task(text_path=str(tmp_path / "nope.txt"))
    assert "\n" not in str(err.value)
    monkeypatch.setattr(task_module, "FORTUNES_DIR", tmp_path / "no-fortunes")
    monkeypatch.setattr(task_module, "PYDOC_DIR", tmp_path / "no-docs")
    with pytest.raises(HeadsurgeonError, match="install 'fortunes'") as err:
        build_task()
    assert "\n" not in str(err.value)


def test_python_docs_fallback(tmp_path, monkeypatch):
    if not task_module.PYDOC_DIR.is_dir():
        pytest.skip("python3.11-doc is not installed")
    monkeypatch.setattr(task_module, "FORTUNES_DIR", tmp_path / "no-fortunes")
    task = build_task()
    assert str(task_module.PYDOC_DIR) in task.source
