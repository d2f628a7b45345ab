"""Every Python example in the README and in docs/ runs as written.

The blocks of one document run in order in one namespace, as a reader would paste them, in an empty temporary
folder (so examples that write files leave nothing behind).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def test_readme_has_the_quickstart() -> None:
    """The README's first example is the seed usage."""
    first = FENCE.findall((ROOT / "README.md").read_text())[0]
    assert "flow = Flow(RealNVP(n_dim)); flow.fit(x)" in first
    assert "log_prob = flow.log_prob(x); x_new = flow.sample(50)" in first


@pytest.mark.parametrize("document", DOCUMENTS, ids=[d.name for d in DOCUMENTS])
def test_examples_run(document: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each block executes without error, in order, in a shared namespace."""
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__example__"}
    threads = torch.get_num_threads()  # an example may set the thread count; later tests keep theirs
    try:
        for i, code in enumerate(FENCE.findall(document.read_text())):
            exec(compile(code, f"{document.name}:block{i}", "exec"), namespace)
    finally:
        torch.set_num_threads(threads)
