"""Project ids as Label Studio sends them, and each project's model line."""

from __future__ import annotations

import pytest

from loop.common.projects import model_line, project_number


@pytest.mark.parametrize("value, number", [(12, 12), ("12", 12), ("12.1700000000", 12), (" 7 ", 7), (None, None),
                                           ("x", None), ("12;rm", None), (-1, None), (True, None), (1.5, None),
                                           ({"id": 3}, None)])
def test_project_numbers_as_label_studio_sends_them(value, number):
    assert project_number(value) == number


def test_each_project_has_its_own_line():
    assert model_line("labelloop", "3.1700000000") == "labelloop-project-3"
    assert model_line("team-a", 3) != model_line("team-a", 4)
    with pytest.raises(ValueError):
        model_line("labelloop", None)
