"""A tiny surgery run (saved stock model, small text corpus, 4 steps) and its full report, built
once per session: the report tests and the browser test read them."""

from __future__ import annotations

import pytest

from headsurgeon.models import load_model
from headsurgeon.models.adapters import HeadRef
from headsurgeon.models.tiny import tiny_model_and_tokenizer
from headsurgeon.prompts import builtin_prompts
from headsurgeon.surgery import SurgeryPlan, operate, preset

PLAN = SurgeryPlan(model={}, targets=[HeadRef(0, 1), HeadRef(1, 2)], frozen_in_zone=[HeadRef(1, 3)])


def make_corpus(root):
    corpus = root / "corpus"
    corpus.mkdir()
    for i in range(6):
        for p in builtin_prompts():
            (corpus / f"{p.name}-{i}.txt").write_text(p.text)
    return corpus


def tiny_config(corpus, **kw):
    return preset("tiny").with_(corpus=str(corpus), max_steps=4, eval_every=2, **kw)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A finished run whose stock model is a local folder (so generations/ablation can load it)."""
    root = tmp_path_factory.mktemp("tiny-run")
    model, tok = tiny_model_and_tokenizer("llama", seed=0)
    model.save_pretrained(root / "stock")
    tok.save_pretrained(root / "stock")
    lm = load_model(str(root / "stock"), progress=False)
    operate(lm, PLAN, out_dir=root / "run", config=tiny_config(make_corpus(root)), progress=False)
    return root / "run"


@pytest.fixture(scope="session")
def full_report(tiny_run, tmp_path_factory):
    from headsurgeon.report import ReportOptions, build_report

    out = tmp_path_factory.mktemp("report") / "report.html"
    opts = ReportOptions(max_new_tokens=8, ablation_per_group=2, ablation_sequences=2, reuse=False)
    return build_report(tiny_run, out=out, options=opts, progress=False)
