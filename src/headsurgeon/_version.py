"""Package and JSON-document versions (bumped by hand when a result layout changes)."""

__version__ = "0.1.0"

#: Version of each kind of JSON document headsurgeon writes (the ``schema_version`` of its
#: envelope). Readers refuse a document whose major version differs from the one listed here.
DOCUMENT_VERSIONS: dict[str, str] = {
    "diagnosis": "1.0",
    "plan": "1.0",
    "comparison": "1.0",
    "report": "1.0",
    "extremes": "1.0",
    "study": "1.2",  # 1.1: budgets, runs[].stopping, training-corpus and best-point scalars; 1.2: curves train_loss_mean
    "study_stock_reference": "1.1",  # 1.1: ablation_by_heads (only the chosen arms' heads; 1.0 files are recomputed)
    "study_run_measures": "1.1",  # 1.1: steps (measures are redone when a run was continued)
    "toy_run": "1.0",
    "toy_compare": "1.0",
    "lab": "1.0",
    "lab_config": "1.0",
    "lab_run": "1.0",
    "report_piece": "1.0",  # RUN/evaluation/<piece>.json, the report's cached model-loading results
    "model_record": "1.0",  # headsurgeon-surgery.json beside a saved model
    "training_state": "1.0",  # state.json of a checkpoint generation
    # 2.0: typed manifest with the input weights' digest; checksummed, pickle-free checkpoints.
    # 2.1: stopping (early stopping, budgets), stock.reused_from, resumed[].to_budget.
    # 2.2: dtype (frozen weights held in bf16 / fp16 with --dtype).
    # 2.3: history[].train_loss_mean; versions.bf16_products and resumed[].bf16_products.
    "surgery_run": "2.3",
    "lora_run": "2.3",
}

#: The diagnosis layout's version (kept under its old name for readers of ``headsurgeon.SCHEMA_VERSION``).
SCHEMA_VERSION = DOCUMENT_VERSIONS["diagnosis"]
