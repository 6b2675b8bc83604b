"""Execute notebooks/quickstart.ipynb and save it with its outputs (plots included), so
the repository page shows them. The test suite executes it again (tests/test_notebook.py).

    OMP_NUM_THREADS=1 python tools/run_notebook.py [--data synthetic]
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
NB = REPO / "notebooks" / "quickstart.ipynb"


def main(argv: list[str]) -> int:
    data = argv[argv.index("--data") + 1] if "--data" in argv else "synthetic"
    os.environ["LLMREC_NOTEBOOK_DATA"] = data
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    nb = nbformat.read(NB, as_version=4)
    with tempfile.TemporaryDirectory() as tmp:  # the notebook's files stay out of the repo
        NotebookClient(nb, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": tmp}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    if errors:
        print(f"the notebook failed: {errors[0].get('ename')}: {errors[0].get('evalue')}")
        return 1
    for c in nb.cells:  # stable metadata: no execution timings in the diff
        c.get("metadata", {}).pop("execution", None)
    nbformat.write(nb, NB)
    print(f"executed and saved {NB} (data: {data})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
