"""``blaze embed``: output formatting, and one real run on the built-in model."""

from __future__ import annotations

import pytest

from blaze_ai.cli import main
from blaze_ai.cli.embed import format_vector, similarity_table


def test_format_vector_elides_the_middle() -> None:
    assert format_vector([0.5, -0.25]) == "[0.5000, -0.2500]"
    long = [float(i) for i in range(10)]
    assert format_vector(long) == "[0.0000, 1.0000, 2.0000, 3.0000, 4.0000, ..., 9.0000]"
    assert format_vector(long, full=True).count(",") == 9


def test_similarity_table_is_cosine() -> None:
    table = similarity_table(["x", "y", "z"], [[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    rows = table.splitlines()
    assert rows[1].split() == ["0", "1.000", "1.000", "0.000"]
    assert rows[3].split() == ["2", "0.000", "0.000", "1.000"]
    assert rows[-1].split() == ["2", "z"]


@pytest.mark.slow
def test_blaze_embed_prints_similarities(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["embed", "a cat", "a kitten", "quarterly revenue", "--similarity"]) == 0
    rows = capsys.readouterr().out.splitlines()
    cat_row = [float(x) for x in rows[1].split()[1:]]
    assert cat_row[0] == pytest.approx(1.0, abs=1e-3)
    assert cat_row[1] > cat_row[2] + 0.3


@pytest.mark.slow
def test_blaze_embed_prints_vectors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["embed", "hello", "--dimensions", "8"]) == 0
    assert capsys.readouterr().out.startswith("'hello' (8 dims): [")
