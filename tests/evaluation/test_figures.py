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


def test_figure_format_and_dpi_apply_to_every_file(tmp_path):
    """--format svg/pdf writes that format with the right suffix; --dpi changes PNG resolution;
    the HTML embedding stays PNG; bad values are one-line errors."""
    import struct

    import matplotlib.pyplot as plt
    import pytest

    from headsurgeon.errors import HeadsurgeonError
    from headsurgeon.figure_files import figure_format, png_bytes, save_figure

    def fig():
        f, ax = plt.subplots(figsize=(2, 1))
        ax.plot([0, 1])
        return f

    def width(path):
        return struct.unpack(">I", path.read_bytes()[16:20])[0]

    assert save_figure(fig(), tmp_path / "a.png") == tmp_path / "a.png" and width(tmp_path / "a.png") == 300  # 2 in x 150 dpi
    with figure_format("png", dpi=50):
        assert width(save_figure(fig(), tmp_path / "b.png")) == 100
    with figure_format("svg"):
        p = save_figure(fig(), tmp_path / "c.png")
        assert p.suffix == ".svg" and p.read_text().lstrip().startswith("<?xml")
        assert png_bytes(fig())[:4] == b"\x89PNG"
    with figure_format("pdf"):
        assert save_figure(fig(), tmp_path / "d.png").read_bytes()[:4] == b"%PDF"
    assert save_figure(fig(), tmp_path / "e.png").suffix == ".png"  # the block ended: back to PNG
    with pytest.raises(HeadsurgeonError, match="--format must be one of"):
        with figure_format("jpg"):
            pass


def test_cell_text_contrasts_with_its_cell():
    from headsurgeon.diagnosis.figures import text_color_on

    assert text_color_on((0.02, 0.02, 0.05, 1)) == "white" and text_color_on((0.99, 0.98, 0.8, 1)) == "black"
