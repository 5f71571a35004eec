"""Slot placement of the embedded model's batched decoder: pure functions."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from treesynth.core.llm.transports.local_slots import Placement, cells_needed, common_prefix, place


def test_common_prefix():
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix([], [1]) == 0
    assert common_prefix([1, 2], [1, 2, 3]) == 2


def test_a_free_slot_reuses_its_own_cache():
    hist = [[1, 2, 3, 9], [7, 7]]
    assert place([1, 2, 3, 4, 5], [0, 1], hist) == Placement(0, 0, 3)


def test_a_running_slots_prefix_is_copied_into_the_free_slot_worth_least():
    hist = [[1, 2, 3, 4, 8], [1, 9], [5]]  # slot 0 is running
    assert place([1, 2, 3, 4, 5], [1, 2], hist) == Placement(2, 0, 4)


def test_the_last_prompt_token_is_always_evaluated():
    assert place([1, 2, 3], [0], [[1, 2, 3]]) == Placement(0, 0, 2)


def test_nothing_to_reuse_takes_a_free_slot_without_copying():
    assert place([4, 5], [1], [[1], [2]]) == Placement(1, 1, 0)


def test_no_free_slot():
    assert place([1, 2], [], [[1, 2]]) is None


def test_cells_needed():
    assert cells_needed(100, 60, 50) == 90
    assert cells_needed(10, 10, 5) == 5


@given(st.lists(st.integers(0, 3), min_size=1, max_size=12),
       st.lists(st.lists(st.integers(0, 3), max_size=12), min_size=1, max_size=5), st.data())
def test_placement_invariants(prompt, hist, data):
    free = data.draw(st.lists(st.sampled_from(range(len(hist))), unique=True, min_size=1))
    p = place(prompt, free, hist)
    assert p is not None and p.slot in free
    assert 0 <= p.reuse < len(prompt)
    assert p.reuse <= common_prefix(prompt, hist[p.source])
    # no slot offers a longer reusable prefix
    assert all(min(common_prefix(prompt, h), len(prompt) - 1) <= p.reuse for h in hist)
    if p.source != p.slot:
        assert p.source not in free and p.reuse > 0
