"""skstellar.reporting.format_table, shared by the CLI, demos and benchmarks."""

import pytest

from skstellar.reporting import format_table


def test_format_table_aligns_columns():
    text = format_table(["quantity", "value"], [("std (dex)", 0.08), ("n", 984)])
    lines = text.split("\n")
    assert len(lines) == 6 and len({len(line) for line in lines}) == 1
    assert lines[1] == "| quantity  | value |"
    assert lines[3] == "| std (dex) | 0.08  |"


def test_format_table_rejects_ragged_rows():
    with pytest.raises(ValueError, match="Row 1 has 1 cells"):
        format_table(["a", "b"], [(1, 2), (3,)])


def test_cli_and_evaluation_modules_share_it():
    import skstellar.cli as cli
    import skstellar.cyclestarnet.evaluation  # noqa: F401  (imported without the CLI circle)
    import skstellar.photod.evaluation  # noqa: F401

    assert cli._table is format_table


def test_timed_returns_the_result_and_a_non_negative_duration():
    import time

    from skstellar.reporting import timed

    result, seconds = timed(lambda a, b=0: (time.sleep(0.01), a + b)[1], 2, b=3)
    assert result == 5
    assert 0.01 <= seconds < 5.0
