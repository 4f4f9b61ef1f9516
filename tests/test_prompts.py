"""Prompts: the BOS policy, the first token, too-short prompts, prompt files, padding."""

from __future__ import annotations

import json

import pytest
import torch

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.models.tiny import byte_tokenizer
from headsurgeon.prompts import DOMAINS, Prompt, builtin_prompts, read_prompt_file
from headsurgeon.prompts.encoding import batches, encode_prompts, first_token

TEXT = "The cat sat."


@pytest.fixture(scope="module")
def adds_bos():
    """Like the tiny Llama tokenizer: puts ``<bos>`` in front of every text."""
    return byte_tokenizer(add_bos=True)


@pytest.fixture(scope="module")
def no_bos():
    """Like the tiny BLOOM tokenizer (and SmolLM2's): position 0 is the first byte of the text."""
    return byte_tokenizer(add_bos=False)


def encode_one(tok, text=TEXT, **kw):
    return encode_prompts(tok, [Prompt("p", "test", text)], **kw)[0]


def test_tiny_tokenizers_differ_in_bos(adds_bos, no_bos):
    assert adds_bos(TEXT)["input_ids"][0] == adds_bos.bos_token_id
    assert no_bos(TEXT)["input_ids"][0] != no_bos.bos_token_id


def test_bos_auto_keeps_the_tokenizers_behaviour(adds_bos, no_bos):
    a = encode_one(adds_bos, bos="auto")
    b = encode_one(no_bos, bos="auto")
    assert a.ids[0] == adds_bos.bos_token_id and first_token(adds_bos, a) == "<bos>"
    assert b.ids[0] != no_bos.bos_token_id and first_token(no_bos, b) == "T"
    assert a.ids[1:] == b.ids and a.length == len(TEXT) + 1


def test_bos_force_puts_exactly_one_bos_first(adds_bos, no_bos):
    a = encode_one(adds_bos, bos="force")
    b = encode_one(no_bos, bos="force")
    assert a.ids == b.ids  # no double BOS for the tokenizer that already adds one
    assert a.ids[0] == adds_bos.bos_token_id and a.ids[1] != adds_bos.bos_token_id
    assert first_token(no_bos, b) == "<bos>"


def test_bos_none_strips_a_leading_bos(adds_bos, no_bos):
    a = encode_one(adds_bos, bos="none")
    b = encode_one(no_bos, bos="none")
    assert a.ids == b.ids == no_bos(TEXT)["input_ids"]
    assert first_token(adds_bos, a) == "T"


def test_bad_bos_mode_and_force_without_bos_token():
    tok = byte_tokenizer()
    with pytest.raises(HeadsurgeonError, match="--bos must be one of auto, force, none"):
        encode_one(tok, bos="always")
    tok.bos_token = None
    with pytest.raises(HeadsurgeonError, match="no BOS token"):
        encode_one(tok, bos="force")
    assert encode_one(tok, bos="none").ids == tok(TEXT)["input_ids"]  # nothing to strip, no crash


@pytest.mark.parametrize("text,bos", [("a", "auto"), ("", "auto"), ("a", "none")])
def test_prompt_shorter_than_two_tokens_is_an_error(adds_bos, no_bos, text, bos):
    tok = no_bos if bos == "auto" else adds_bos
    with pytest.raises(HeadsurgeonError) as info:
        encode_prompts(tok, [Prompt("fine", "t", "long enough"), Prompt("tiny-one", "t", text)], bos=bos)
    msg = str(info.value)
    assert "'tiny-one'" in msg and "at least 2 tokens" in msg and "\n" not in msg
    # with a BOS in front, one character is two tokens and fine
    assert encode_one(adds_bos, "a", bos="auto").length == 2


def test_max_length_truncates_and_cannot_go_below_two(no_bos):
    assert encode_one(no_bos, max_length=5).ids == no_bos(TEXT)["input_ids"][:5]
    with pytest.raises(HeadsurgeonError, match="at least 2 tokens"):
        encode_one(no_bos, max_length=1)


def test_batches_are_right_padded_and_keep_position_zero(no_bos):
    texts = ["abc", "abcdefgh", "ab", "abcdef", "abcde"]
    enc = encode_prompts(no_bos, [Prompt(f"p{i}", "t", t) for i, t in enumerate(texts)])
    pad = no_bos.pad_token_id
    seen = []
    for batch in batches(enc, batch_size=2, pad_id=pad):
        B, T = batch.input_ids.shape
        assert T == max(enc[i].length for i in batch.indices)
        for row, i in enumerate(batch.indices):
            n = enc[i].length
            assert batch.lengths[row] == n
            assert batch.input_ids[row, :n].tolist() == enc[i].ids  # real tokens start at 0
            assert (batch.input_ids[row, n:] == pad).all()
            assert batch.attention_mask[row].tolist() == [1] * n + [0] * (T - n)
        seen += batch.indices
    assert sorted(seen) == list(range(len(texts)))


# ----- built-in set ------------------------------------------------------------------------------
def test_builtin_prompts_cover_every_domain(no_bos):
    prompts = builtin_prompts()
    assert len(prompts) == 12 and len({p.name for p in prompts}) == 12
    assert {p.domain for p in prompts} == set(DOMAINS)
    assert all(sum(p.domain == d for p in prompts) == 2 for d in DOMAINS)
    assert [p.domain for p in builtin_prompts(["code", "math"])] == ["code", "code", "math", "math"]
    assert all(len(p.text) > 200 for p in prompts)
    encode_prompts(no_bos, prompts)  # every one is encodable and long enough


# ----- prompt files --------------------------------------------------------------------------------
def test_text_file_one_prompt_per_paragraph(tmp_path):
    f = tmp_path / "mine.txt"
    f.write_text("First prompt\nspans two lines.\n\n\n\nSecond prompt.\n\n   \n", encoding="utf-8")
    got = read_prompt_file(f)
    assert [p.text for p in got] == ["First prompt\nspans two lines.", "Second prompt."]
    assert [p.name for p in got] == ["mine-0", "mine-1"] and {p.domain for p in got} == {"mine"}


def test_jsonl_file(tmp_path):
    f = tmp_path / "set.jsonl"
    f.write_text(
        json.dumps({"text": "one two", "name": "first", "domain": "code"}) + "\n\n"
        + json.dumps({"text": "three four"}) + "\n",
        encoding="utf-8",
    )
    got = read_prompt_file(f)
    assert [(p.name, p.domain, p.text) for p in got] == [("first", "code", "one two"), ("set-1", "set", "three four")]


@pytest.mark.parametrize("bad", ["{not json", json.dumps({"name": "no text"}), json.dumps(["text"]), json.dumps({"text": 5})])
def test_bad_jsonl_line_names_the_line(tmp_path, bad):
    f = tmp_path / "set.jsonl"
    f.write_text(json.dumps({"text": "fine"}) + "\n" + bad + "\n", encoding="utf-8")
    with pytest.raises(HeadsurgeonError, match="line 2") as info:
        read_prompt_file(f)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("content", [b"", b"\n\n   \n\n", b"\xff\xfe\x00 not utf-8 \x81"])
def test_empty_or_unreadable_prompt_file(tmp_path, content):
    f = tmp_path / "prompts.txt"
    f.write_bytes(content)
    with pytest.raises(HeadsurgeonError, match="holds no prompts|cannot read prompt file") as info:
        read_prompt_file(f)
    assert "\n" not in str(info.value)


def test_empty_jsonl_and_missing_file(tmp_path):
    (tmp_path / "e.jsonl").write_text("\n\n")
    with pytest.raises(HeadsurgeonError, match="holds no prompts"):
        read_prompt_file(tmp_path / "e.jsonl")
    with pytest.raises(HeadsurgeonError, match="does not exist"):
        read_prompt_file(tmp_path / "missing.txt")


def test_encoded_ids_are_plain_ints(no_bos):
    e = encode_one(no_bos)
    assert all(isinstance(i, int) for i in e.ids)
    assert torch.tensor(e.ids).dtype == torch.long
