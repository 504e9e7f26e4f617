"""The benchmark scaling figure draws what `attnverify bench` measured (no timing here)."""

import pytest
from attnverify.figures.bench_scaling import save

from attnverify.errors import InputError

RESULTS = {
    "machine": "test",
    "scaling": [{"vary": "T", "value": 8, "models_per_s": 4000.0}, {"vary": "T", "value": 64, "models_per_s": 900.0},
                {"vary": "K", "value": 2, "models_per_s": 9000.0}, {"vary": "K", "value": 16, "models_per_s": 800.0}],
    "devices": [{"devices": 1, "models_per_s": 4000.0}, {"devices": 4, "models_per_s": 4100.0}],
    "lime": {"scaling": [{"vary": "n", "value": 1000, "samples_per_s": 2e5},
                         {"vary": "n", "value": 5000, "samples_per_s": 3e5}]},
}


@pytest.mark.parametrize("suffix", [".png", ".pdf"])
def test_scaling_figure_is_written(tmp_path, suffix):
    path = save(RESULTS, tmp_path / f"scaling{suffix}")
    assert path.exists() and path.stat().st_size > 1000
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


def test_scaling_figure_needs_scaling_numbers(tmp_path):
    with pytest.raises(InputError, match="scaling"):
        save({"machine": "test", "theorem1": {}}, tmp_path / "x.png")
    assert not any(tmp_path.iterdir())


def test_scaling_figure_rejects_other_formats(tmp_path):
    with pytest.raises(InputError, match=".png or .pdf"):
        save(RESULTS, tmp_path / "x.svg")
