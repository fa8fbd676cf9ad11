"""dovit.core.token_grid: which token each pixel belongs to, per-token majorities."""
import numpy as np

from dovit.core.token_grid import (
    expand_tokens,
    token_index_map,
    token_majority,
    token_rows_and_columns,
    token_starts,
)


def test_token_geometry_maps_pixels_to_their_patch():
    # a 40 x 56 image seen at 32 x 48 on a 2 x 3 grid: the left third of the top half is token 0
    index = token_index_map((40, 56), (32, 48), (2, 3), 16)
    assert index.shape == (40, 56) and index[0, 0] == 0 and index[-1, -1] == 5
    assert set(np.unique(index)) == set(range(6))
    labels = np.where(index == 4, 2, 1)
    labels[:20, :] = 255  # the top half is void: tokens 0-2 get no majority
    assert token_majority(labels, index, 6, 3, ignore_index=255).tolist() == [255, 255, 255, 1, 2, 1]
    assert np.array_equal(expand_tokens(np.arange(6).reshape(2, 3), index), index)


def test_token_starts_are_where_the_token_row_changes():
    rows, columns = token_rows_and_columns((540, 960), (312, 554), (20, 35), 16)
    assert np.array_equal(token_index_map((540, 960), (312, 554), (20, 35), 16),
                          rows[:, None] * 35 + columns[None, :])
    starts = token_starts(rows)
    assert starts[0] == 0 and len(starts) == 20 and np.array_equal(rows[starts], np.arange(20))
    same = token_rows_and_columns((60, 80), (60, 80), (4, 5), 16)[0]  # at the working size: every patch
    assert np.array_equal(token_starts(same), np.arange(0, 60, 16))
