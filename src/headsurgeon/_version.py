"""Package and JSON-schema versions (bumped by hand when a result layout changes)."""

__version__ = "0.1.0"

#: Version of every JSON document headsurgeon writes. Readers refuse a different major version.
SCHEMA_VERSION = "1.0"
