"""Each plot writes a non-empty PNG of sensible size; the reward grid has the paper's values."""
import matplotlib.image
import pytest

from cocos_lib.report import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check_png(path, name):
    assert path.name == name and path.is_file()
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5000
    h, w = matplotlib.image.imread(path).shape[:2]
    assert h > 150 and w > 200
    return data


def test_transitions(tmp_path):
    m = {"t1→t2": {"c2c": 0.3, "c2i": 0.1, "i2c": 0.2, "i2i": 0.4},
         "t2→t3": {"c2c": 0.45, "c2i": 0.05, "i2c": 0.0, "i2i": 0.5}}
    _check_png(plots.plot_transitions(m, tmp_path / "figs"), "transitions.png")


def test_accuracy_gains(tmp_path):
    p = plots.plot_accuracy_gains({"tiny CoCoS": [0, 0.1, 0.12, 0.12], "base": [0, 0.01, 0.01, 0.0]},
                                  tmp_path, filename="gains.png")
    a = _check_png(p, "gains.png")
    q = plots.plot_accuracy_gains({"tiny CoCoS": [0, 0.1, 0.12, 0.12]}, tmp_path, filename="g2.png", paper=False)
    assert a != q.read_bytes()  # the paper's dashed rows change the figure


def test_edit_bins_put_identical_answers_in_their_own_bin():
    shares = plots.edit_bins([0.0, 0.0, 0.02, 0.05, 0.3, 0.9, float("nan")])
    assert list(shares) == ["identical", "(0, 0.05]", "(0.05, 0.1]", "(0.1, 0.2]", "(0.2, 0.4]", "(0.4, 0.7]",
                            "(0.7, 1]"]
    assert shares["identical"] == pytest.approx(100 * 2 / 6) and shares["(0, 0.05]"] == pytest.approx(100 * 2 / 6)
    assert shares["(0.2, 0.4]"] == pytest.approx(100 / 6) and shares["(0.7, 1]"] == pytest.approx(100 / 6)
    assert sum(shares.values()) == pytest.approx(100) and plots.edit_bins([])["identical"] == 0.0


def test_edit_distances(tmp_path):
    _check_png(plots.plot_edit_distances([0.0, 0.0, 0.02, 0.3, 0.9, float("nan")], tmp_path), "edit_distance.png")
    _check_png(plots.plot_edit_distances({"wrong": [0.0, 0.01], "right": [0.5, 0.7, 1.0]}, tmp_path,
                                         filename="ed2.png"), "ed2.png")


def test_training_curves(tmp_path):
    recs = [{"update": i, "reward_t1": 0.3 + 0.001 * i, "reward_t2": 0.3 + 0.004 * i,
             "accumulated": 0.15 + 0.003 * i, "kl": 0.0001 * i, "loss": 0.1} for i in range(40)]
    _check_png(plots.plot_training_curves(recs, tmp_path, window=5), "training_curves.png")
    with pytest.raises(ValueError, match="no records"):
        plots.plot_training_curves([], tmp_path)


def test_runs(tmp_path):
    runs = {f"run {j}": [{"update": i, "reward_t2": 0.1 * j + 0.01 * i} for i in range(10)] for j in range(7)}
    runs["no key"] = [{"update": i} for i in range(10)]
    _check_png(plots.plot_runs(runs, "reward_t2", tmp_path / "figs", "runs.png", title="t2"), "runs.png")


def test_rolling_mean():
    assert plots._rolling([1, 2, 3, 4], 2) == [1, 1.5, 2.5, 3.5]


def test_reward_table(tmp_path):
    grid = plots.reward_grid(0.5)  # binary: rows r_1, cols r_2
    assert grid == [[0.0, 1.0], [-0.5, 0.5]]  # i->i 0, i->c 1, c->i -0.5, c->c 0.5 (docs/paper.md §3)
    assert plots.reward_grid(0.0)[1][1] == 0.0 and plots.reward_grid(1.0) == [[0.0, 1.0], [0.0, 1.0]]
    assert plots.reward_grid(0.5, n_tests=3)[3][2] == pytest.approx(0.5 - 1 / 3)
    _check_png(plots.plot_reward_table(0.5, tmp_path), "reward_table_gamma0.5.png")
    _check_png(plots.plot_reward_table(0.5, tmp_path, n_tests=3, filename="rt3.png"), "rt3.png")


def test_style_restores_rcparams():
    import matplotlib
    before = matplotlib.rcParams["axes.spines.top"]
    with plots.style():
        assert matplotlib.rcParams["axes.spines.top"] is False
    assert matplotlib.rcParams["axes.spines.top"] == before
