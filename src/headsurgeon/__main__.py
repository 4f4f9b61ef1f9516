"""``python -m headsurgeon`` runs the CLI; ``accelerate launch -m headsurgeon operate ...`` runs it on several processes."""

from headsurgeon.cli.main import run

if __name__ == "__main__":
    raise SystemExit(run())
