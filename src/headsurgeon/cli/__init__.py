"""Thin command-line layer: one file per subcommand, each calling one public API function."""
