"""The generated stand-in dataset the benchmarks' --quick modes read."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.standin_data import write_standin_dataset


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_standin_dataset(tmp_path_factory.mktemp("datasets"))
