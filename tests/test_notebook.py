"""The quickstart notebook runs top to bottom (nbclient), so it cannot rot."""

import shutil
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NB = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


def _run(tmp_path, monkeypatch, data):
    monkeypatch.setenv("LLMREC_NOTEBOOK_DATA", data)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    nb_path = tmp_path / NB.name
    shutil.copy(NB, nb_path)
    nb = nbformat.read(nb_path, as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    assert (tmp_path / "scaling_curve.png").stat().st_size > 1000
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "->" in text  # recommendations for new prompts were printed
    return text


@pytest.mark.slow
def test_quickstart_runs_on_synthetic(tmp_path, monkeypatch):
    assert "synthetic" in _run(tmp_path, monkeypatch, "synthetic")


@pytest.mark.slow
def test_quickstart_runs_on_mmlu_pro(tmp_path, monkeypatch, shared_data):
    monkeypatch.setenv("LLMREC_SHARED_DATA", str(shared_data))
    assert "mmlu-pro" in _run(tmp_path, monkeypatch, "mmlu-pro")
