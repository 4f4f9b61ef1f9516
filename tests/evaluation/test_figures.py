"""Every comparison figure renders for two inputs, for a run-like sequence, and without a zone."""

import io

import matplotlib.image as mpimg
import numpy as np
import pytest
from eval_helpers import AFTER, BEFORE, MID, PLAN, diag, fake_run

from headsurgeon.evaluation import compare, load_run, perplexity_trajectory, write_comparison
from headsurgeon.evaluation.figures import (
    column_figure,
    drift_figure,
    histogram_figure,
    key_indices,
    perplexity_figure,
    png_bytes,
    topology_figure,
    zone_figure,
)


def _image(png: bytes) -> np.ndarray:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return mpimg.imread(io.BytesIO(png), format="png")


def _not_blank(png: bytes) -> None:
    img = _image(png)
    assert img.shape[0] > 200 and img.shape[1] > 300
    assert (img[..., :3] < 0.9).mean() > 0.01  # something is drawn on the white canvas


@pytest.mark.parametrize("case", ["pair", "run", "no-zone"])
def test_figures_render(case, tmp_path):
    if case == "run":
        c = compare([fake_run(tmp_path / "run", [diag(BEFORE), diag(BEFORE), diag(MID), diag(AFTER)])])
    else:
        c = compare([diag(BEFORE), diag(AFTER)], zone=PLAN if case == "pair" else None)
    figs = [topology_figure(c), drift_figure(c), column_figure(c), histogram_figure(c)]
    if len(c.labels) > 2:
        figs.append(zone_figure(c))
    for fig in figs:
        _not_blank(png_bytes(fig))


def test_key_indices_pick_first_reinit_best_last():
    c = compare([diag(BEFORE)] + [diag(MID)] * 5 + [diag(AFTER)])
    c.steps = [None, 0, 2, 4, 6, 8, 10]
    assert key_indices(c, best_step=4) == [0, 1, 3, 6]
    assert key_indices(c) == [0, 1, 6]
    assert key_indices(compare([diag(BEFORE), diag(AFTER)])) == [0, 1]


def test_perplexity_figure_and_comparison_files(tmp_path):
    run = fake_run(tmp_path / "run", [diag(BEFORE), diag(BEFORE), diag(MID), diag(AFTER)])
    _not_blank(png_bytes(perplexity_figure(perplexity_trajectory(load_run(run).manifest))))
    paths = write_comparison(compare([run]), tmp_path / "out")
    assert sorted(p.name for p in paths) == ["columns.png", "comparison.json", "drift.png", "histogram.png", "topology.png", "zones.png"]
    for p in paths:
        if p.suffix == ".png":
            _not_blank(p.read_bytes())
