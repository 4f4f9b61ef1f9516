"""The bad-input table: every command, every kind of bad input, one line ``error: ...``.

Each row is (command line, expected exit code, words the error line must contain). A row runs
the real CLI entry point (``headsurgeon.cli.main.run``) in-process over tiny saved models, and
checks: the exit code, exactly one stderr line starting with ``error: ``, the expected words,
no traceback anywhere. Rows marked ``EARLY`` must fail before any weights are read: there,
``transformers``' ``from_pretrained`` is replaced by a function that fails the test.

Full disks and read-only places are simulated at the two seams every writer goes through
(``headsurgeon.io._create_temp`` / ``_write_all``; safetensors' ``save_file`` for checkpoints):
the tests run as root, where ``chmod`` stops nothing. A path under a regular file (ENOTDIR)
is a real, unsimulated unwritable place.

``ISSUE`` maps each case listed in issue 11 to the rows that cover it; a test checks that every
listed case has at least one row.
"""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest

from headsurgeon.cli.main import run
from headsurgeon.models.adapters import HeadRef
from headsurgeon.surgery import SurgeryPlan

EARLY = "early"  # must fail before any weights are read
LATE = "late"  # may load the (tiny) model first

#: id -> (argv with {placeholders}, exit code, words expected in the error line, EARLY/LATE, simulation)
#: simulation: None, "enospc" (writer: no space), "erofs" (writer: read-only), "safetensors-full"
CASES: dict[str, tuple[list[str], int, list[str], str, str | None]] = {
    # ---- GGUF files that are not GGUF, empty, truncated ----------------------------------------
    "diagnose-gguf-not-gguf": (["diagnose", "-m", "{notgguf}"], 2, ["not a GGUF file"], EARLY, None),
    "diagnose-gguf-empty": (["diagnose", "-m", "{emptygguf}"], 2, ["is empty"], EARLY, None),
    "diagnose-gguf-truncated": (["diagnose", "-m", "{truncgguf}"], 2, ["truncated"], EARLY, None),
    "diagnose-gguf-bad-version": (["diagnose", "-m", "{v9gguf}"], 2, ["version 9"], EARLY, None),
    "operate-gguf-not-gguf": (["operate", "{plan_llama}", "-m", "{notgguf}"], 2, ["not a GGUF file"], EARLY, None),
    "operate-gguf-empty": (["operate", "{plan_llama}", "-m", "{emptygguf}"], 2, ["is empty"], EARLY, None),
    "operate-gguf-truncated": (["operate", "{plan_llama}", "-m", "{truncgguf}"], 2, ["truncated"], EARLY, None),
    "extremes-gguf-truncated": (["extremes", "-m", "{truncgguf}"], 2, ["truncated"], EARLY, None),
    # ---- outputs: a directory, a file where a folder is wanted, read-only, full disk -------------
    # -o FOLDER writes FOLDER/plan.json (issue 15): what is refused is a plan.json there that is a directory
    "plan-out-is-directory": (["plan", "{diag_llama}", "--top", "2", "-o", "{dir_plan}"], 2, ["is a directory"], EARLY, None),
    "plan-out-read-only": (["plan", "{diag_llama}", "--top", "2", "-o", "{tmp}/ro/plan.json"], 2, ["read-only"], EARLY, "erofs"),
    "plan-out-under-a-file": (["plan", "{diag_llama}", "--top", "2", "-o", "{afile}/plan.json"], 2, ["not a folder"], EARLY, None),
    "plan-disk-full": (["plan", "{diag_llama}", "--top", "2", "-o", "{tmp}/full/plan.json"], 1, ["no space left"], EARLY, "enospc"),
    "toy-train-out-existing-file": (["toy", "train", "--max-steps", "2", "-o", "{afile}"], 2, ["existing file"], EARLY, None),
    "toy-compare-out-existing-file": (["toy", "compare", "--max-steps", "2", "-o", "{afile}"], 2, ["existing file"], EARLY, None),
    "toy-train-read-only": (["toy", "train", "--max-steps", "2", "-o", "{tmp}/ro-toy"], 2, ["read-only"], EARLY, "erofs"),
    "report-read-only": (["report", "{run}", "--fast", "-o", "{tmp}/ro-report/r.html"], 2, ["read-only"], EARLY, "erofs"),
    "report-out-is-directory": (["report", "{run}", "--fast", "-o", "{dir_report}"], 2, ["is a directory"], EARLY, None),
    "diagnose-disk-full": (["diagnose", "-m", "{llama}", "--prompts", "{good}", "-o", "{tmp}/full-diag"], 1, ["no space left"], LATE, "enospc"),
    "diagnose-read-only": (["diagnose", "-m", "{llama}", "-o", "{tmp}/ro-diag"], 2, ["read-only"], EARLY, "erofs"),
    "diagnose-out-existing-file": (["diagnose", "-m", "{llama}", "-o", "{afile}"], 2, ["existing file"], EARLY, None),
    "compare-disk-full": (["compare", "{diag_llama}", "{diag_llama2}", "-o", "{tmp}/full-compare"], 1, ["no space left"], EARLY, "enospc"),
    "compare-out-existing-file": (["compare", "{diag_llama}", "{diag_llama2}", "-o", "{afile}"], 2, ["existing file"], EARLY, None),
    "operate-disk-full": (["operate", "{plan_llama}", "-m", "{llama}", "--preset", "tiny", "--corpus", "{corpus}", "-o", "{tmp}/full-op"],
                          1, ["no space left"], LATE, "enospc"),
    "operate-disk-full-safetensors": (["operate", "{plan_llama}", "-m", "{llama}", "--preset", "tiny", "--corpus", "{corpus}",
                                       "-o", "{tmp}/full-op-st"], 1, ["no space left"], LATE, "safetensors-full"),
    "operate-out-existing-file": (["operate", "{plan_llama}", "-m", "{llama}", "-o", "{afile}"], 2, ["existing file"], EARLY, None),
    "extremes-out-existing-file": (["extremes", "-m", "{llama}", "-o", "{afile}"], 2, ["existing file"], EARLY, None),
    "study-out-existing-file": (["study", "-m", "{llama}", "--preset", "tiny", "-o", "{afile}"], 2, ["existing file"], EARLY, None),
    # ---- hand-written plans -------------------------------------------------------------------
    "plan-targets-list": (["operate", "{p_targets_list}", "-m", "{llama}"], 2, ["'targets'", "must map layer numbers"], EARLY, None),
    "plan-model-string": (["operate", "{p_model_string}", "-m", "{llama}"], 2, ["'model'", "must be a mapping"], EARLY, None),
    "plan-rules-number": (["operate", "{p_rules_number}", "-m", "{llama}"], 2, ["'rules'", "list of texts"], EARLY, None),
    "plan-not-utf8": (["operate", "{p_latin1}", "-m", "{llama}"], 2, ["not UTF-8", "offset"], EARLY, None),
    "plan-json-repeated-layer": (["operate", "{p_dup_json}", "-m", "{llama}"], 2, ["repeats the key '1'"], EARLY, None),
    "plan-yaml-repeated-layer": (["operate", "{p_dup_yaml}", "-m", "{llama}"], 2, ["repeats the key 1", "line"], EARLY, None),
    "plan-head-float": (["operate", "{p_float}", "-m", "{llama}"], 2, ["1.9", "not a head number"], EARLY, None),
    "plan-head-true": (["operate", "{p_true}", "-m", "{llama}"], 2, ["True", "not a head number"], EARLY, None),
    "plan-head-yaml-yes": (["operate", "{p_yes_yaml}", "-m", "{llama}"], 2, ["True", "not a head number"], EARLY, None),
    "plan-head-negative": (["operate", "{p_negative}", "-m", "{llama}"], 2, ["-1", "not a head number"], EARLY, None),
    "plan-head-repeated": (["operate", "{p_head_twice}", "-m", "{llama}"], 2, ["head 1 twice"], EARLY, None),
    "plan-layer-key-word": (["operate", "{p_layer_word}", "-m", "{llama}"], 2, ["layer key 'x'"], EARLY, None),
    "plan-unknown-field": (["operate", "{p_unknown}", "-m", "{llama}"], 2, ["unknown field 'targetz'"], EARLY, None),
    "plan-unknown-model-key": (["operate", "{p_model_key}", "-m", "{llama}"], 2, ["unknown key 'layers'"], EARLY, None),
    "plan-nan-head": (["operate", "{p_nan}", "-m", "{llama}"], 2, ["does not parse as JSON"], EARLY, None),
    "plan-n-targets-wrong": (["operate", "{p_ntargets}", "-m", "{llama}"], 2, ["n_targets"], EARLY, None),
    "plan-yaml-list": (["operate", "{p_yaml_list}", "-m", "{llama}"], 2, ["not a surgery plan"], EARLY, None),
    "plan-syntax": (["operate", "{p_syntax}", "-m", "{llama}"], 2, ["does not parse as JSON"], EARLY, None),
    "plan-is-directory": (["operate", "{tmp}", "-m", "{llama}"], 2, ["is a directory"], EARLY, None),
    "plan-missing": (["operate", "{tmp}/nope.json", "-m", "{llama}"], 2, ["does not exist"], EARLY, None),
    "plan-head-out-of-range": (["operate", "{p_out_of_range}", "-m", "{llama}"], 2, ["out of range"], EARLY, None),
    "plan-bloom-on-llama": (["operate", "{plan_bloom}", "-m", "{llama_same_shape}"], 2, ["family bloom in the plan, llama here",
                                                                                        "--allow-other-model"], EARLY, None),
    "plan-other-weights": (["operate", "{plan_llama}", "-m", "{llama_seed1}"], 2, ["weights_fingerprint", "--allow-other-model"], EARLY, None),
    "plan-gpt2-on-llama": (["operate", "{plan_gpt2}", "-m", "{llama}"], 2, ["family gpt2 in the plan"], EARLY, None),
    # ---- float options: NaN, inf, out of range ------------------------------------------------
    "operate-lr-nan": (["operate", "{plan_llama}", "-m", "{llama}", "--lr", "nan"], 2, ["--lr", "not a finite number"], EARLY, None),
    "operate-lr-inf": (["operate", "{plan_llama}", "-m", "{llama}", "--lr", "inf"], 2, ["--lr", "not a finite number"], EARLY, None),
    "operate-lr-zero": (["operate", "{plan_llama}", "-m", "{llama}", "--lr", "0"], 2, ["--lr must be a finite number > 0"], EARLY, None),
    "operate-weight-decay-nan": (["operate", "{plan_llama}", "-m", "{llama}", "--weight-decay", "nan"], 2, ["--weight-decay"], EARLY, None),
    "operate-clip-norm-nan": (["operate", "{plan_llama}", "-m", "{llama}", "--clip-norm", "nan"], 2, ["--clip-norm"], EARLY, None),
    "operate-clip-norm-negative": (["operate", "{plan_llama}", "-m", "{llama}", "--clip-norm", "-1"], 2,
                                   ["--clip-norm must be a finite number >= 0"], EARLY, None),
    "operate-prefix-cache-nan": (["operate", "{plan_llama}", "-m", "{llama}", "--prefix-cache-gb", "nan"], 2, ["--prefix-cache-gb"], EARLY, None),
    "operate-prefix-cache-inf": (["operate", "{plan_llama}", "-m", "{llama}", "--prefix-cache-gb", "inf"], 2, ["--prefix-cache-gb"], EARLY, None),
    "operate-prefix-cache-negative": (["operate", "{plan_llama}", "-m", "{llama}", "--prefix-cache-gb", "-2"], 2,
                                      ["--prefix-cache-gb must be a finite number >= 0"], EARLY, None),
    "operate-precision-unknown": (["operate", "{plan_llama}", "-m", "{llama}", "--precision", "fp8"], 2, ["--precision must be one of"], EARLY, None),
    "operate-best-metric-unknown": (["operate", "{plan_llama}", "-m", "{llama}", "--best-metric", "accuracy"], 2, ["--best-metric"], EARLY, None),
    "operate-seed-negative": (["operate", "{plan_llama}", "-m", "{llama}", "--seed", "-1"], 2, ["--seed must be a whole number >= 0"], EARLY, None),
    "operate-eval-every-zero": (["operate", "{plan_llama}", "-m", "{llama}", "--eval-every", "0"], 2, ["--eval-every"], EARLY, None),
    "operate-lr-word": (["operate", "{plan_llama}", "-m", "{llama}", "--lr", "fast"], 2, ["--lr"], EARLY, None),
    "study-lr-nan": (["study", "-m", "{llama}", "--preset", "tiny", "--lr", "nan"], 2, ["--lr", "not a finite number"], EARLY, None),
    "study-lr-negative": (["study", "-m", "{llama}", "--preset", "tiny", "--lr", "-1"], 2, ["--lr must be"], EARLY, None),
    "study-seeds-repeated": (["study", "-m", "{llama}", "--preset", "tiny", "--seeds", "1,1"], 2, ["no repeats"], EARLY, None),
    "study-seeds-words": (["study", "-m", "{llama}", "--preset", "tiny", "--seeds", "a,b"], 2, ["comma-separated integers"], EARLY, None),
    "study-threads-zero": (["study", "-m", "{llama}", "--preset", "tiny", "--threads", "0"], 2, ["--threads"], EARLY, None),
    "toy-lr-nan": (["toy", "train", "--set", "lr=nan"], 2, ["lr must be a finite number > 0", "--set lr="], EARLY, None),
    "toy-weight-decay-nan": (["toy", "train", "--set", "weight_decay=nan"], 2, ["weight_decay"], EARLY, None),
    "toy-lr-inf": (["toy", "compare", "--set", "lr=inf"], 2, ["lr must be a finite number"], EARLY, None),
    "toy-momentum-too-big": (["toy", "train", "--set", "momentum=1.5"], 2, ["momentum must be"], EARLY, None),
    "toy-steps-zero": (["toy", "train", "--max-steps", "0"], 2, ["steps must be a whole number >= 1"], EARLY, None),
    "toy-attention-unknown": (["toy", "train", "--set", "attention=linear"], 2, ["attention must be one of"], EARLY, None),
    "toy-unknown-key": (["toy", "train", "--set", "learning_rate=1"], 2, ["unknown toy config key"], EARLY, None),
    "toy-int-word": (["toy", "train", "--set", "dim=wide"], 2, ["dim='wide'"], EARLY, None),
    "report-temperature-nan": (["report", "{run}", "--temperature", "nan"], 2, ["--temperature", "not a finite number"], EARLY, None),
    "report-temperature-zero": (["report", "{run}", "--temperature", "0"], 2, ["--temperature must be a finite number > 0"], EARLY, None),
    "report-top-p-too-big": (["report", "{run}", "--top-p", "1.5"], 2, ["--top-p must be"], EARLY, None),
    "report-max-new-tokens-zero": (["report", "{run}", "--max-new-tokens", "0"], 2, ["--max-new-tokens"], EARLY, None),
    "report-drift-nan": (["report", "{run}", "--fast", "--drift-threshold", "nan"], 2, ["--drift-threshold"], EARLY, None),
    "report-stock-model-missing": (["report", "{run}", "--stock-model", "{tmp}/no-such-model", "-o", "{tmp}/r-stock.html"], 2,
                                   ["--stock-model", "no config.json"], EARLY, None),
    "diagnose-low-entropy-nan": (["diagnose", "-m", "{llama}", "--low-entropy-threshold", "nan"], 2, ["--low-entropy-threshold"], EARLY, None),
    "diagnose-sink-inf": (["diagnose", "-m", "{llama}", "--sink-threshold", "inf"], 2, ["--sink-threshold"], EARLY, None),
    "diagnose-dead-too-big": (["diagnose", "-m", "{llama}", "--dead-threshold", "2"], 2, ["--dead-threshold must be"], EARLY, None),
    "diagnose-bos-unknown": (["diagnose", "-m", "{llama}", "--bos", "always"], 2, ["--bos must be one of"], EARLY, None),
    "compare-drift-nan": (["compare", "{diag_llama}", "{diag_llama2}", "--drift-threshold", "nan"], 2, ["--drift-threshold"], EARLY, None),
    "compare-drift-too-big": (["compare", "{diag_llama}", "{diag_llama2}", "--drift-threshold", "5"], 2, ["--drift-threshold must be"], EARLY, None),
    "extremes-margin-nan": (["extremes", "-m", "{llama}", "--margin", "nan"], 2, ["--margin"], EARLY, None),
    "extremes-sink-threshold-too-big": (["extremes", "-m", "{llama}", "--key-sink-threshold", "1.5"], 2, ["--key-sink-threshold must be"], EARLY, None),
    "extremes-metric-unknown": (["extremes", "-m", "{llama}", "--dormancy-metric", "entropy"], 2, ["--dormancy-metric must be one of"], EARLY, None),
    "extremes-head-out-of-range": (["extremes", "-m", "{llama}", "--head", "L9H0"], 2, ["L9H0 does not exist", "2 layers x 4 heads"], EARLY, None),
    "extremes-head-syntax": (["extremes", "-m", "{llama}", "--head", "head3"], 2, ["'head3' is not a head"], EARLY, None),
    # ---- --seq-len beyond the model's positions -----------------------------------------------
    "operate-seq-len-beyond-gpt2": (["operate", "{plan_gpt2}", "-m", "{gpt2}", "--seq-len", "4096"], 2, ["--seq-len 4096", "512 positions"], EARLY, None),
    "study-seq-len-beyond-gpt2": (["study", "-m", "{gpt2}", "--preset", "tiny", "--seq-len", "4096"], 2, ["--seq-len 4096", "512 positions"], EARLY, None),
    # ---- corpora and prompt files: one UTF-8 policy --------------------------------------------
    "operate-corpus-broken-dataset-dict": (["operate", "{plan_llama}", "-m", "{llama}", "--corpus", "{broken_dsdict}"], 2,
                                           ["dataset_dict.json is broken"], EARLY, None),
    "operate-corpus-missing": (["operate", "{plan_llama}", "-m", "{llama}", "--corpus", "{tmp}/no-corpus"], 2, ["does not exist"], EARLY, None),
    "operate-corpus-not-utf8": (["operate", "{plan_llama}", "-m", "{llama}", "--preset", "tiny", "--corpus", "{latin1_corpus}"], 2,
                                ["not UTF-8", "latin1.txt"], LATE, None),
    "operate-corpus-folder-not-utf8": (["operate", "{plan_llama}", "-m", "{llama}", "--preset", "tiny", "--corpus", "{latin1_folder}"], 2,
                                       ["not UTF-8", "bad.txt"], LATE, None),
    "diagnose-prompts-not-utf8": (["diagnose", "-m", "{llama}", "--prompts", "{latin1_corpus}"], 2, ["not UTF-8", "offset"], EARLY, None),
    "diagnose-prompts-directory": (["diagnose", "-m", "{llama}", "--prompts", "{tmp}"], 2, ["is a directory"], EARLY, None),
    "diagnose-prompts-jsonl-repeated-key": (["diagnose", "-m", "{llama}", "--prompts", "{dup_jsonl}"], 2, ["line 1", "repeated keys"], EARLY, None),
    "report-prompts-not-utf8": (["report", "{run}", "--generation-prompts", "{latin1_corpus}"], 2, ["not UTF-8"], EARLY, None),
    # ---- models ---------------------------------------------------------------------------------
    "diagnose-model-missing": (["diagnose", "-m", "{tmp}/no/such/model"], 2, ["does not exist"], EARLY, None),
    "diagnose-model-no-config": (["diagnose", "-m", "{noconfig}"], 2, ["has no config.json"], EARLY, None),
    "diagnose-model-pickle-only": (["diagnose", "-m", "{pickle_only}"], 2, ["never unpickles", "pytorch_model.bin"], EARLY, None),
    "operate-model-broken-config": (["operate", "{plan_llama}", "-m", "{broken_config}"], 2, ["config.json"], EARLY, None),
    "operate-model-truncated-safetensors": (["operate", "{plan_llama}", "-m", "{trunc_safetensors}"], 2, ["safetensors"], EARLY, None),
    # ---- diagnoses of different models, folders holding other things ---------------------------
    "compare-gpt2-vs-llama": (["compare", "{diag_llama}", "{diag_gpt2}", "-o", "{tmp}/cmp-models"], 2,
                              ["different models", "--allow-different-models"], EARLY, None),
    "compare-not-json": (["compare", "{diag_llama}", "{afile}", "-o", "{tmp}/cmp-bad"], 2, ["not valid JSON"], EARLY, None),
    "study-into-surgery-run": (["study", "-m", "{llama}", "--preset", "tiny", "-o", "{run}"], 2, ["holds a surgery run"], EARLY, None),
    "operate-into-study-like-folder": (["operate", "{plan_llama}", "-m", "{llama}", "--preset", "tiny", "--corpus", "{corpus}", "-o", "{nonempty}"], 2,
                                       ["not empty"], LATE, None),
    # ---- more hostile inputs ---------------------------------------------------------------------
    "plan-yaml-python-tag": (["operate", "{p_pytag_yaml}", "-m", "{llama}"], 2, ["does not parse as YAML"], EARLY, None),
    "compare-zone-bad-plan": (["compare", "{diag_llama}", "{diag_llama2}", "--zone", "{p_float}", "-o", "{tmp}/cmp-zone"], 2,
                              ["not a head number"], EARLY, None),
    "report-not-a-run": (["report", "{tmp}/latin1-folder", "--fast"], 2, ["manifest.json"], EARLY, None),
    "report-manifest-no-config": (["report", "{m_no_config}", "--fast"], 2, ["has no 'config'", "restore its manifest.json"], EARLY, None),
    "report-manifest-model-string": (["report", "{m_model_string}", "--fast"], 2, ["'model' is str", "not dict"], EARLY, None),
    "report-manifest-history-text": (["report", "{m_history_text}", "--fast"], 2, ["'history' is str"], EARLY, None),
    "report-manifest-row-no-step": (["report", "{m_row_no_step}", "--fast"], 2, ["no whole-number 'step'"], EARLY, None),
    "compare-diagnosis-no-per-prompt": (["compare", "{diag_llama}", "{d_no_per_prompt}", "-o", "{tmp}/cmp-d1"], 2, ["has no 'per_prompt'", "re-create it"], EARLY, None),
    "compare-diagnosis-prompt-row-empty": (["compare", "{d_prompt_row_empty}", "{diag_llama}", "-o", "{tmp}/cmp-d2"], 2, ["prompt 0 has no 'name'"], EARLY, None),
    "plan-diagnosis-wrong-shape": (["plan", "{d_wrong_shape}", "--top", "2", "-o", "{tmp}/p-d3.json"], 2, ["has 1 layers, the model 2"], EARLY, None),
    "plan-diagnosis-out-of-range": (["plan", "{d_out_of_range}", "--top", "2", "-o", "{tmp}/p-d4.json"], 2, ["outside [0, 1]"], EARLY, None),
    "plan-diagnosis-text-values": (["plan", "{d_text_values}", "--top", "2", "-o", "{tmp}/p-d5.json"], 2, ["not a [prompt][layer][head] array"], EARLY, None),
    "lab-lr-nan": (["lab", "run", "--preset", "tiny", "--set", "lr=nan", "-o", "{tmp}/lab-nan"], 2, ["lr must be a finite number > 0", "--set lr="], EARLY, None),
    "lab-clip-norm-inf": (["lab", "run", "--preset", "tiny", "--set", "clip_norm=inf", "-o", "{tmp}/lab-inf"], 2, ["clip_norm must be a finite"], EARLY, None),
    "lab-steps-negative": (["lab", "run", "--preset", "tiny", "--set", "steps=-1", "-o", "{tmp}/lab-neg"], 2, ["steps must be at least 1"], EARLY, None),
    "compare-manifest-status-number": (["compare", "{m_status_number}", "-o", "{tmp}/cmp-status"], 2, ["'status' is int"], EARLY, None),
    "plan-from-a-plan-file": (["plan", "{plan_llama}", "--top", "2", "-o", "{tmp}/p2.json"], 2, ["'plan' document"], EARLY, None),
    "diagnose-max-length-one": (["diagnose", "-m", "{llama}", "--max-length", "1"], 2, ["--max-length"], EARLY, None),
    "operate-epochs-zero": (["operate", "{plan_llama}", "-m", "{llama}", "--seed", "0", "--epochs", "0"], 2, ["--epochs must be"], EARLY, None),
    "study-targets-zero": (["study", "-m", "{llama}", "--preset", "tiny", "--targets", "0"], 2, ["--targets must be"], EARLY, None),
    "extremes-only-bogus": (["extremes", "-m", "{llama}", "--only", "sinks,vibes"], 2, ["unknown part"], EARLY, None),
    # ---- usage errors are one line too -----------------------------------------------------------
    "usage-unknown-option": (["operate", "{plan_llama}", "--learning-rate", "1"], 2, ["No such option", "operate --help"], EARLY, None),
    "usage-missing-argument": (["operate"], 2, ["Missing argument", "operate --help"], EARLY, None),
    "usage-unknown-command": (["operat"], 2, ["No such command"], EARLY, None),
}

#: Issue 11's list -> the rows above that cover it.
ISSUE = {
    "gguf not GGUF / empty / truncated (diagnose, operate)": ["diagnose-gguf-not-gguf", "diagnose-gguf-empty", "diagnose-gguf-truncated",
                                                            "operate-gguf-not-gguf", "operate-gguf-empty", "operate-gguf-truncated"],
    "plan -o a directory or read-only": ["plan-out-is-directory", "plan-out-read-only", "plan-out-under-a-file"],
    "toy train -o an existing file": ["toy-train-out-existing-file"],
    "report and toy writing to a read-only place": ["report-read-only", "toy-train-read-only"],
    "plan: targets as a list of numbers": ["plan-targets-list"],
    "plan: model as a string": ["plan-model-string"],
    "plan: rules as a number": ["plan-rules-number"],
    "plan: non-UTF-8 bytes": ["plan-not-utf8"],
    "--lr nan, --weight-decay nan (operate, study, toy)": ["operate-lr-nan", "operate-weight-decay-nan", "study-lr-nan", "toy-lr-nan",
                                                           "toy-weight-decay-nan"],
    "--prefix-cache-gb nan or inf": ["operate-prefix-cache-nan", "operate-prefix-cache-inf"],
    "report --temperature nan": ["report-temperature-nan"],
    "--seq-len beyond the model's positions (GPT-2)": ["operate-seq-len-beyond-gpt2", "study-seq-len-beyond-gpt2"],
    "corpus folder with a broken dataset_dict.json": ["operate-corpus-broken-dataset-dict"],
    "full disk in diagnose, plan, compare, operate": ["diagnose-disk-full", "plan-disk-full", "compare-disk-full", "operate-disk-full",
                                                      "operate-disk-full-safetensors"],
    "plan: a layer key repeated in JSON or YAML": ["plan-json-repeated-layer", "plan-yaml-repeated-layer"],
    "plan: 1.9 and true as heads": ["plan-head-float", "plan-head-true", "plan-head-yaml-yes"],
    "a BLOOM plan on a Llama model of the same shape": ["plan-bloom-on-llama"],
    "--low-entropy-threshold nan": ["diagnose-low-entropy-nan"],
    "--clip-norm nan and -1": ["operate-clip-norm-nan", "operate-clip-norm-negative"],
    "compare: diagnoses of two different models": ["compare-gpt2-vs-llama"],
    "study writes into a folder holding a surgery run": ["study-into-surgery-run"],
    "corpora and prompt files: one UTF-8 policy": ["operate-corpus-not-utf8", "operate-corpus-folder-not-utf8", "diagnose-prompts-not-utf8",
                                                   "report-prompts-not-utf8"],
    "too late: prompt-file and plan-range errors after the model loaded": ["diagnose-prompts-not-utf8", "plan-head-out-of-range"],
}


def _plan_doc(**fields) -> dict:
    return {"kind": "plan", "targets": {"0": [1]}, **fields}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, saved_tiny, tiny_factory, opt_saver):
    """Every file the table names, built once (tiny models, diagnoses, plans, a fake run)."""
    from headsurgeon.diagnosis import diagnose
    from headsurgeon.models import load_model
    from headsurgeon.prompts import builtin_prompts
    from headsurgeon.surgery import make_plan

    tmp = tmp_path_factory.mktemp("bad-input")
    v: dict[str, str] = {"tmp": str(tmp)}
    for name, case in (("llama", "llama-gqa"), ("gpt2", "gpt2"), ("bloom", "bloom")):
        v[name] = str(saved_tiny(case))
    # a Llama of BLOOM's shape (2 layers x 4 heads, hidden 32) and a Llama with other weights
    for name, seed in (("llama_same_shape", 0), ("llama_seed1", 1)):
        lm = tiny_factory("llama-gqa", seed=seed, kv_heads=4) if name == "llama_same_shape" else tiny_factory("llama-gqa", seed=seed)
        lm.model.save_pretrained(tmp / name)
        lm.tokenizer.save_pretrained(tmp / name)
        v[name] = str(tmp / name)
    prompts = [p for p in builtin_prompts()][:2]
    diags = {}
    for name in ("llama", "gpt2", "bloom"):
        d = diagnose(load_model(v[name], progress=False), prompts=prompts, max_length=32, progress=False)
        d.save(tmp / f"diag-{name}.json")
        v[f"diag_{name}"] = str(tmp / f"diag-{name}.json")
        diags[name] = d
    diags["llama"].save(tmp / "diag-llama2.json")
    v["diag_llama2"] = str(tmp / "diag-llama2.json")
    for name in ("llama", "gpt2", "bloom"):
        make_plan(diags[name], top=2).save(tmp / f"plan-{name}.json")
        v[f"plan_{name}"] = str(tmp / f"plan-{name}.json")

    plans = {
        "p_targets_list": json.dumps(_plan_doc(targets=[1, 2, 3])),
        "p_model_string": json.dumps(_plan_doc(model="gpt2")),
        "p_rules_number": json.dumps(_plan_doc(rules=5)),
        "p_float": json.dumps(_plan_doc(targets={"1": [1.9]})),
        "p_true": json.dumps(_plan_doc(targets={"1": [True]})),
        "p_negative": json.dumps(_plan_doc(targets={"1": [-1]})),
        "p_head_twice": json.dumps(_plan_doc(targets={"1": [1, 1]})),
        "p_layer_word": json.dumps(_plan_doc(targets={"x": [1]})),
        "p_unknown": json.dumps({"kind": "plan", "targetz": {"0": [1]}}),
        "p_model_key": json.dumps(_plan_doc(model={"layers": 2})),
        "p_ntargets": json.dumps(_plan_doc(n_targets=5)),
        "p_out_of_range": json.dumps(_plan_doc(targets={"7": [1]})),
        "p_dup_json": '{"kind": "plan", "targets": {"1": [0], "1": [2]}}',
        "p_nan": '{"kind": "plan", "targets": {"1": [NaN]}}',
        "p_syntax": '{"kind": "plan", "targets": ',
    }
    for name, text in plans.items():
        (tmp / f"{name}.json").write_text(text)
        v[name] = str(tmp / f"{name}.json")
    for name, text in {"p_dup_yaml": "kind: plan\ntargets:\n  1: [0]\n  1: [2]\n", "p_yes_yaml": "targets:\n  1: [yes]\n",
                       "p_yaml_list": "- 1\n- 2\n", "p_pytag_yaml": "targets: !!python/object/apply:os.system [echo hi]\n"}.items():
        (tmp / f"{name}.yaml").write_text(text)
        v[name] = str(tmp / f"{name}.yaml")
    for name, file in (("dir_plan", "plan.json"), ("dir_report", "report.html")):  # -o FOLDER whose target name is a folder
        (tmp / name / file).mkdir(parents=True)
        v[name] = str(tmp / name)
    (tmp / "p_latin1.json").write_bytes(b'{"kind": "plan", "rules": ["caf\xe9"], "targets": {"0": [1]}}')
    v["p_latin1"] = str(tmp / "p_latin1.json")
    # GGUF files: not GGUF, empty, truncated (the real default model cut in half, or a fake header), bad version
    (tmp / "not.gguf").write_text("this is not a model\n")
    (tmp / "empty.gguf").write_bytes(b"")
    # a header that promises 5 tensors and ends (test_gguf_check_* cuts the real file too)
    (tmp / "trunc.gguf").write_bytes(b"GGUF" + (3).to_bytes(4, "little") + (5).to_bytes(8, "little") + (0).to_bytes(8, "little"))
    (tmp / "v9.gguf").write_bytes(b"GGUF" + (9).to_bytes(4, "little") + bytes(16))
    v.update(notgguf=str(tmp / "not.gguf"), emptygguf=str(tmp / "empty.gguf"), truncgguf=str(tmp / "trunc.gguf"), v9gguf=str(tmp / "v9.gguf"))
    # odd model folders
    (tmp / "noconfig").mkdir()
    (tmp / "noconfig" / "model.safetensors").write_bytes(b"\0" * 16)
    shutil.copytree(v["llama"], tmp / "pickle_only")
    for f in (tmp / "pickle_only").glob("*.safetensors"):
        f.unlink()
    (tmp / "pickle_only" / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    shutil.copytree(v["llama"], tmp / "broken_config")
    (tmp / "broken_config" / "config.json").write_text("{not json")
    shutil.copytree(v["llama"], tmp / "trunc_safetensors")
    st = next((tmp / "trunc_safetensors").glob("*.safetensors"))
    st.write_bytes(st.read_bytes()[:20])
    v.update({k: str(tmp / k) for k in ("noconfig", "pickle_only", "broken_config", "trunc_safetensors")})
    # text
    (tmp / "a-file").write_text("a regular file, not a folder\n")
    (tmp / "good.txt").write_text("The harbour was quiet before dawn.\n\nfor i in range(3):\n    print(i)\n")
    (tmp / "latin1.txt").write_bytes("Un caf\u00e9 cr\u00e8me, s'il vous pla\u00eet.\n".encode("latin-1") * 200)
    (tmp / "latin1-folder").mkdir()
    (tmp / "latin1-folder" / "good.txt").write_text("plain text " * 300)
    (tmp / "latin1-folder" / "bad.txt").write_bytes(b"caf\xe9 " * 300)
    (tmp / "dup.jsonl").write_text('{"text": "one", "text": "two"}\n')
    (tmp / "broken-dsdict").mkdir()
    (tmp / "broken-dsdict" / "dataset_dict.json").write_text('{"splits": ')
    (tmp / "nonempty").mkdir()
    (tmp / "nonempty" / "notes.txt").write_text("someone's notes\n")
    corpus = tmp / "corpus"
    corpus.mkdir()
    for p in builtin_prompts():  # enough for the tiny preset's first evaluation
        (corpus / f"{p.name}.txt").write_text(p.text)
    v.update(afile=str(tmp / "a-file"), good=str(tmp / "good.txt"), latin1_corpus=str(tmp / "latin1.txt"),
             latin1_folder=str(tmp / "latin1-folder"), dup_jsonl=str(tmp / "dup.jsonl"), broken_dsdict=str(tmp / "broken-dsdict"),
             nonempty=str(tmp / "nonempty"), corpus=str(corpus))
    # a surgery run folder without training (the hand-made run of tests/evaluation)
    v["run"] = str(_fake_run(tmp / "run", diags["llama"], SurgeryPlan.load(v["plan_llama"])))
    # hand-edited copies of its manifest: a key gone, a value of the wrong type, a row without its step
    good = json.loads((tmp / "run" / "manifest.json").read_text())
    damaged = {"m_no_config": {k: x for k, x in good.items() if k != "config"}, "m_model_string": {**good, "model": "gpt2"},
               "m_history_text": {**good, "history": "abc"}, "m_row_no_step": {**good, "history": [{"train_ppl": 3.0}]},
               "m_status_number": {**good, "status": 3}}
    good_diag = json.loads((tmp / "diag-llama.json").read_text())
    pp = good_diag["per_prompt"]
    bad_diags = {"d_no_per_prompt": {k: x for k, x in good_diag.items() if k != "per_prompt"},
                 "d_prompt_row_empty": {**good_diag, "prompts": [{}] + good_diag["prompts"][1:]},
                 "d_wrong_shape": {**good_diag, "per_prompt": {**pp, "bos_mass": [row[:1] for row in pp["bos_mass"]]}},
                 "d_out_of_range": {**good_diag, "per_prompt": {**pp, "bos_mass": [[[7.0] * len(r) for r in p] for p in pp["bos_mass"]]}},
                 "d_text_values": {**good_diag, "per_prompt": {**pp, "entropy": "high"}}}
    for name, doc in bad_diags.items():
        (tmp / f"{name}.json").write_text(json.dumps(doc))
        v[name] = str(tmp / f"{name}.json")
    for name, doc in damaged.items():
        shutil.copytree(tmp / "run", tmp / name)
        (tmp / name / "manifest.json").write_text(json.dumps(doc))
        v[name] = str(tmp / name)
    return v


def _fake_run(root: Path, d, plan: SurgeryPlan) -> Path:
    """A run folder as ``operate`` leaves it (manifest + diagnoses), without training anything."""
    from headsurgeon._version import DOCUMENT_VERSIONS

    (root / "diagnoses").mkdir(parents=True)
    d.save(root / "diagnoses" / "stock.json")
    history = []
    for step in (0, 4):
        rel = f"diagnoses/step-{step:06d}.json"
        d.save(root / rel)
        history.append({"step": step, "epoch": step / 4, "tokens": step * 64, "train_ppl": 10.0 - step / 4,
                        "heldout_ppl": 11.0 - step / 8, "diagnosis": rel})
    manifest = {"schema_version": DOCUMENT_VERSIONS["surgery_run"], "kind": "surgery_run", "fingerprint": "hand-made", "config": {}, "status": "finished", "plan": plan.to_dict(),
                "model": d.model, "stock": {"train_ppl": 9.0, "heldout_ppl": 10.0, "diagnosis": "diagnoses/stock.json"},
                "history": history, "best": {"metric": "heldout_ppl", "value": 10.5, "step": 4}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def _simulate(monkeypatch, how: str | None) -> None:
    import headsurgeon.io as hio

    def refuse(code: int, text: str):
        def fail(*args, **kwargs):
            raise OSError(code, text)
        return fail

    if how == "enospc":  # creating files works (the writability probe passes), writing their bytes does not
        monkeypatch.setattr(hio, "_write_all", refuse(errno.ENOSPC, "No space left on device"))
    elif how == "erofs":
        monkeypatch.setattr(hio, "_create_temp", refuse(errno.EROFS, "Read-only file system"))
    elif how == "safetensors-full":
        from safetensors import SafetensorError

        import headsurgeon.surgery.checkpoint as ck

        def full(*args, **kwargs):
            raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })')
        monkeypatch.setattr(ck, "save_file", full)


#: Commands with a --progress switch (turned off here: progress bars go to stderr).
_PROGRESS = {"diagnose", "operate", "report", "study", "extremes", "toy train", "toy compare", "lab run"}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gives_one_error_line(case, inputs, monkeypatch, capsys, tmp_path):
    argv, code, words, when, simulation = CASES[case]
    argv = [a.format(**inputs) for a in argv]
    if (argv[0] in _PROGRESS or " ".join(argv[:2]) in _PROGRESS) and len(argv) > 1:
        argv.append("--no-progress")
    monkeypatch.chdir(tmp_path)  # default output folders (out/..., runs/toy/...) land here
    if when == EARLY:
        import transformers

        def weights_read(*args, **kwargs):
            raise AssertionError("weights were read before the bad input was refused")
        monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", weights_read)
    _simulate(monkeypatch, simulation)
    capsys.readouterr()
    got = run(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("error: "), line
    assert "weights were read" not in line, line
    for w in words:
        assert w in line, (w, line)
    assert got == code, (got, line)
    assert ";" in line, f"no 'what to do' half: {line}"
    assert len(line) < 500
    if simulation is not None and "-o" in argv:  # a failed write leaves no temporary behind
        written = Path(argv[argv.index("-o") + 1])
        leftovers = [str(p) for p in written.parent.rglob("*") if p.name.startswith((".tmp-", ".old-")) or p.name.endswith(".tmp")]
        assert not leftovers, leftovers


def test_every_case_of_the_issue_has_a_row():
    for case, rows in ISSUE.items():
        assert rows, case
        for r in rows:
            assert r in CASES, (case, r)


def test_full_disk_loses_nothing_written_before(inputs, monkeypatch, capsys, tmp_path):
    """The old diagnosis.json survives a full disk, byte for byte, and no temporary is left."""
    out = tmp_path / "out"
    assert run(["diagnose", "-m", inputs["llama"], "--prompts", inputs["good"], "-o", str(out), "--no-progress"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    _simulate(monkeypatch, "enospc")
    assert run(["diagnose", "-m", inputs["llama"], "--prompts", inputs["good"], "-o", str(out), "--no-progress",
                "--sink-threshold", "0.4"]) == 1
    assert "no space left" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_allow_other_model_overrides_the_refusal(inputs, tmp_path, capsys):
    """--allow-other-model lets a plan made for other weights through (it fails later, on the
    missing corpus, proving the plan check passed)."""
    code = run(["operate", inputs["plan_llama"], "-m", inputs["llama_seed1"], "--corpus", str(tmp_path / "none"),
                "-o", str(tmp_path / "o"), "--no-progress", "--allow-other-model"])
    err = capsys.readouterr().err
    assert code == 2 and "does not exist" in err and "plan was made for" not in err


def test_plans_record_family_shape_and_weights(inputs):
    plan = SurgeryPlan.load(inputs["plan_llama"])
    assert plan.model["family"] == "llama" and plan.model["num_layers"] == 2 and plan.model["num_heads"] == 4
    assert len(plan.model["weights_fingerprint"]) == 16
    assert SurgeryPlan.load(inputs["plan_bloom"]).model["weights_fingerprint"] != plan.model["weights_fingerprint"]


def test_fingerprint_changes_with_the_weights_not_the_place(inputs, tmp_path):
    from headsurgeon.models.preflight import weights_fingerprint

    copy = tmp_path / "copy"
    shutil.copytree(inputs["llama"], copy)
    assert weights_fingerprint(copy) == weights_fingerprint(inputs["llama"])
    assert weights_fingerprint(inputs["llama_seed1"]) != weights_fingerprint(inputs["llama"])
    assert weights_fingerprint(tmp_path) is None


def test_manifest_sources_are_absolute_so_report_finds_the_stock_model(inputs, monkeypatch):
    """load_model stores where a local model is as an absolute path, whatever the cwd was."""
    from headsurgeon.models import load_model

    folder = Path(inputs["llama"])
    monkeypatch.chdir(folder.parent)
    loaded = load_model(folder.name, progress=False)
    assert Path(loaded.source).is_absolute() and Path(loaded.source) == folder.resolve()


def test_old_relative_manifest_source_is_found_from_the_run(inputs, tmp_path, monkeypatch):
    """Manifests written before the fix hold the -m path as typed; report looks around the run."""
    from headsurgeon.evaluation.inputs import load_run
    from headsurgeon.report.pieces import stock_folder

    root = tmp_path / "project"
    shutil.copytree(inputs["llama"], root / "models" / "tiny")
    run_dir = root / "out" / "run"
    shutil.copytree(inputs["run"], run_dir)
    m = json.loads((run_dir / "manifest.json").read_text())
    m["model"]["source"] = "models/tiny"
    (run_dir / "manifest.json").write_text(json.dumps(m))
    monkeypatch.chdir(tmp_path)  # not the folder the run was made from
    folder, why = stock_folder(load_run(run_dir), None)
    assert why is None and folder == root / "models" / "tiny"


def test_plan_roundtrip_of_written_plans_is_strict_but_accepts_them(inputs, tmp_path):
    """What `headsurgeon plan` writes (JSON and YAML) reads back under the strict rules."""
    plan = SurgeryPlan.load(inputs["plan_llama"])
    for suffix in (".json", ".yaml"):
        path = plan.save(tmp_path / f"again{suffix}")
        again = SurgeryPlan.load(path)
        assert again.targets == plan.targets and again.model == plan.model


def test_option_rules_feed_help_text():
    """The rule sits beside the help text; generated help shows both."""
    from headsurgeon.options import field_rules, help_text
    from headsurgeon.surgery import SurgeryConfig

    assert help_text(SurgeryConfig, "lr").endswith("(a finite number > 0)")
    rules = field_rules(SurgeryConfig)
    assert rules["clip_norm"]["rule"]["min"] == 0 and rules["precision"]["rule"]["choices"] == ("fp32", "bf16", "fp16")
    assert rules["lr"]["help"]


def test_gguf_check_accepts_the_real_file_and_refuses_it_cut(tmp_path):
    from headsurgeon.errors import HeadsurgeonError
    from headsurgeon.models.loading import default_gguf_path
    from headsurgeon.models.preflight import check_gguf_file

    try:
        path = default_gguf_path()
    except HeadsurgeonError:
        pytest.skip("default model not installed")
    check_gguf_file(path)
    data = path.read_bytes()
    for cut in (len(data) - 1, len(data) // 2, 4096, 30):
        (tmp_path / "cut.gguf").write_bytes(data[:cut])
        with pytest.raises(HeadsurgeonError, match="truncated"):
            check_gguf_file(tmp_path / "cut.gguf")


def test_plan_check_against_model_names_the_difference():
    from headsurgeon.errors import HeadsurgeonError

    plan = SurgeryPlan(model={"name": "a", "family": "bloom", "num_layers": 2, "num_heads": 4}, targets=[HeadRef(0, 1)])
    with pytest.raises(HeadsurgeonError, match="family bloom in the plan, llama here"):
        plan.check_model({"name": "b", "family": "llama", "num_layers": 2, "num_heads": 4})
    assert plan.check_model({"family": "llama", "num_layers": 2, "num_heads": 4}, allow_other_model=True) == ["family bloom in the plan, llama here"]
    assert SurgeryPlan(model={}, targets=[HeadRef(0, 1)]).check_model({"family": "llama"}) == []
