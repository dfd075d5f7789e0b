"""docs/extending.md is a worked example: its Python blocks run here, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


def test_the_extending_page_runs_as_written() -> None:
    from manifpt.baselines.base import BASELINES
    from manifpt.spaces.base import SPACES

    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 4
    ns: dict = {}
    try:
        for code in blocks:
            exec(compile(code, str(DOC), "exec"), ns)
        assert "gray" in SPACES and "colour-stats" in BASELINES
        assert ns["GraySpace"].name == "gray" and ns["ColourStats"].name == "colour-stats"
    finally:  # the examples must not leak into the other tests' registries
        SPACES.unregister("gray")
        BASELINES.unregister("colour-stats")
    assert "gray" not in SPACES and "colour-stats" not in BASELINES
