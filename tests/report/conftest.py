"""A tiny surgery run (saved stock model, the shared text corpus, 4 steps) and its full report, built
once per session: the report tests and the browser test read them."""

from __future__ import annotations

import pytest
from report_helpers import PLAN, make_other_corpus, tiny_config

from headsurgeon.models import load_model
from headsurgeon.models.tiny import tiny_model_and_tokenizer
from headsurgeon.surgery import operate


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, text_corpus):
    """A finished run whose stock model is a local folder (so generations/ablation can load it)."""
    root = tmp_path_factory.mktemp("tiny-run")
    model, tok = tiny_model_and_tokenizer("llama", seed=0)
    model.save_pretrained(root / "stock")
    tok.save_pretrained(root / "stock")
    lm = load_model(str(root / "stock"), progress=False)
    operate(lm, PLAN, out_dir=root / "run", config=tiny_config(text_corpus, other_corpus=str(make_other_corpus(root))), progress=False)
    return root / "run"


@pytest.fixture(scope="session")
def full_report(tiny_run, tmp_path_factory):
    from headsurgeon.report import ReportOptions, build_report

    out = tmp_path_factory.mktemp("report") / "report.html"
    opts = ReportOptions(max_new_tokens=8, ablation_per_group=2, ablation_sequences=2, reuse=False)
    return build_report(tiny_run, out=out, options=opts, progress=False)
