"""Tests for skstellar.plotting (Agg backend, no display)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from skstellar import plotting  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def data():
    rng = np.random.default_rng(7)
    n = 200
    t = rng.uniform(-1.0, 0.5, n)
    sigma = rng.uniform(0.05, 0.2, n)
    p = t + 0.03 + sigma * rng.normal(size=n)
    snr = rng.uniform(5, 100, n)
    return t, p, sigma, snr


def _save(fig, tmp_path, name):
    path = tmp_path / name
    fig.savefig(path)
    assert path.exists() and path.stat().st_size > 1000
    with open(path, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_one_to_one_basic(data, tmp_path):
    t, p, _, _ = data
    fig = plotting.plot_one_to_one(t, p)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    top, bottom = fig.axes
    assert top.get_shared_x_axes().joined(top, bottom)
    assert "[Fe/H]" in bottom.get_xlabel() and "dex" in bottom.get_xlabel()
    annotation = " ".join(txt.get_text() for txt in top.texts)
    assert "bias" in annotation and "N = 200" in annotation
    _save(fig, tmp_path, "one_to_one.png")
    plt.close(fig)
    assert not plt.fignum_exists(fig.number)


def test_one_to_one_errorbars_colour_lims(data, tmp_path):
    t, p, sigma, snr = data
    fig = plotting.plot_one_to_one(
        t, p, y_std=sigma, color=snr, color_label="S/N", label="Teff", unit="K",
        lims=(-2, 1),
    )
    assert len(fig.axes) == 3  # two panels + colorbar
    assert fig.axes[2].get_ylabel() == "S/N"
    assert fig.axes[0].get_xlim() == pytest.approx((-2, 1))
    assert fig.axes[0].get_ylim() == pytest.approx((-2, 1))
    assert "K" in fig.axes[0].get_ylabel()
    _save(fig, tmp_path, "one_to_one_colour.png")


def test_one_to_one_into_given_axes_and_nan_rows(data):
    t, p, _, _ = data
    p = p.copy()
    p[:5] = np.nan
    fig, axes = plt.subplots(2, 1, sharex=True)
    out = plotting.plot_one_to_one(t, p, ax=axes)
    assert out is fig
    assert len(fig.axes) == 2
    assert "N = 195" in " ".join(txt.get_text() for txt in axes[0].texts)
    with pytest.raises(ValueError):
        plotting.plot_one_to_one(t, p, ax=axes[0])


def test_residual_histogram(data, tmp_path):
    t, p, _, _ = data
    fig = plotting.plot_residual_histogram(t, p, bins=20)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert len(ax.patches) >= 1
    annotation = " ".join(txt.get_text() for txt in ax.texts)
    assert "mean" in annotation and "std" in annotation
    _save(fig, tmp_path, "resid.png")


def test_residual_histogram_into_existing_axes(data):
    t, p, _, _ = data
    fig, axes = plt.subplots(1, 2)
    out = plotting.plot_residual_histogram(t, p, ax=axes[1])
    assert out is fig
    assert len(fig.axes) == 2
    assert axes[1].get_xlabel() != "" and axes[0].get_xlabel() == ""


def test_zscore_histogram(data, tmp_path):
    t, p, sigma, _ = data
    fig = plotting.plot_zscore_histogram(t, p, sigma)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert len(ax.lines) == 1  # the N(0, 1) curve
    x, y = ax.lines[0].get_data()
    assert np.max(y) == pytest.approx(1 / np.sqrt(2 * np.pi), rel=1e-3)
    assert "std" in " ".join(txt.get_text() for txt in ax.texts)
    _save(fig, tmp_path, "z.png")


def test_zscore_histogram_rejects_bad_sigma(data):
    t, p, sigma, _ = data
    sigma = sigma.copy()
    sigma[0] = 0.0
    with pytest.raises(ValueError, match="positive"):
        plotting.plot_zscore_histogram(t, p, sigma)


def test_cmd(data, tmp_path):
    t, p, _, snr = data
    colour = np.linspace(1.5, 4.5, t.size)
    mag = 5 + 2.5 * colour
    fig = plotting.plot_cmd(colour, mag)
    assert len(fig.axes) == 1
    assert fig.axes[0].yaxis_inverted()
    _save(fig, tmp_path, "cmd.png")

    fig2 = plotting.plot_cmd(colour, mag, c=p, color_label="[Fe/H] (dex)")
    assert len(fig2.axes) == 2
    assert fig2.axes[0].yaxis_inverted()
    assert fig2.axes[1].get_ylabel() == "[Fe/H] (dex)"
    _save(fig2, tmp_path, "cmd_colour.png")


def test_cmd_reused_axes_stays_inverted():
    fig, ax = plt.subplots()
    plotting.plot_cmd([1.0, 2.0], [5.0, 8.0], ax=ax)
    plotting.plot_cmd([1.5, 2.5], [6.0, 9.0], ax=ax)
    assert ax.yaxis_inverted()


def test_length_mismatch_raises():
    with pytest.raises(ValueError, match="different lengths"):
        plotting.plot_residual_histogram([1.0, 2.0], [1.0])


def test_calibration_reliability_diagram(data, tmp_path):
    t, p, sigma, _ = data
    fig = plotting.plot_calibration(t, p, sigma, label="calibrated")
    ax = fig.axes[0]
    plotting.plot_calibration(t, p, sigma / 3, ax=ax, label="too small")
    lines = ax.get_lines()
    assert len(lines) == 3  # diagonal drawn once, two curves
    good, bad = lines[1].get_ydata(), lines[2].get_ydata()
    nominal = lines[1].get_xdata()
    # the calibrated curve follows the diagonal, the over-confident one falls below it
    assert np.max(np.abs(good - nominal)) < 0.1
    assert np.all(bad[nominal > 0.3] < nominal[nominal > 0.3] - 0.1)
    assert "z std" in ax.get_legend().get_texts()[1].get_text()
    fig.savefig(tmp_path / "cal.png")
    with pytest.raises(ValueError):
        plotting.plot_calibration(t, p, -sigma)


def test_coverage_curve_values():
    from skstellar.metrics import coverage_curve

    rng = np.random.default_rng(0)
    z = rng.normal(size=20000)
    curve = coverage_curve(z, np.zeros_like(z), 1.0, nominal=[0.6827, 0.9545])
    np.testing.assert_allclose(curve["k"], [1.0, 2.0], atol=1e-3)
    np.testing.assert_allclose(curve["observed"], [0.6827, 0.9545], atol=0.01)
    with pytest.raises(ValueError, match="nominal"):
        coverage_curve(z, z, 1.0, nominal=[1.2])
