"""Surgery tests use the shared fixtures of ``tests/conftest.py`` (``text_corpus``, tiny models)."""
