"""Write one marked section of ``benchmarks/RESULTS.md`` (shared by the benchmark scripts).

A section is the text from its start marker to its end marker, both included; a run
replaces it in place, or appends it when the markers are not there yet.
"""

from __future__ import annotations

import re
from pathlib import Path


def replace_section(path: Path, start: str, end: str, block: str) -> None:
    """Put ``block`` (which carries both markers) in place of ``start``..``end`` in ``path``.

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "R.md"
    >>> replace_section(p, "<!-- a -->", "<!-- /a -->", "<!-- a -->\\n1\\n<!-- /a -->")
    >>> replace_section(p, "<!-- a -->", "<!-- /a -->", "<!-- a -->\\n2\\n<!-- /a -->")
    >>> p.read_text()
    '# Benchmark results\\n\\n<!-- a -->\\n2\\n<!-- /a -->\\n'
    """
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if start in text and end in text:
        text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _m: block, text,
                      flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)
