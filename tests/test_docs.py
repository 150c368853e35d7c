"""Every Python block of the README runs, and every notebook executes."""

import os
import re
import subprocess
import sys
from pathlib import Path

import nbclient
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_has_the_two_setup_commands_first():
    text = README.read_text()
    bash = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    assert len(bash) >= 2
    assert ".venv/bin/likelax" in bash[0]
    assert "pytest" in bash[1]
    ci = (ROOT / ".ci" / "run").read_text()
    # CI runs the README's test command (after installing the same way)
    test_cmd = bash[1].strip().split("&& ")[-1]
    assert test_cmd in ci


def test_readme_python_blocks_run(tmp_path):
    """The blocks run in order, in one fresh interpreter with JAX's default
    configuration (float32, implicit rank promotion), as a reader would run them."""
    blocks = _python_blocks(README.read_text())
    assert blocks, "the README has no python example"
    script = tmp_path / "readme.py"
    script.write_text("\n\n".join(blocks))
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    res = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600
    )
    assert res.returncode == 0, res.stderr[-3000:]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    errors = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert not errors
