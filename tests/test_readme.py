"""The README's Python example runs (with fewer epochs, in a temporary folder)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    code = blocks[0].replace("max_epochs=50", "max_epochs=2").replace(
        "make_mdwarf_photometry(3000", "make_mdwarf_photometry(400")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, str(README), "exec"), namespace)
    assert (tmp_path / "mdwarf_feh.joblib").exists()
    assert namespace["feh"].shape == namespace["feh_err"].shape == (len(namespace["test"]),)
    assert (namespace["feh_err"] > 0).all()
