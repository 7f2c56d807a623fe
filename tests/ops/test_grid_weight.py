"""grid_weight: the reference against the definition, loop by loop in float64."""

import pytest
import torch

from visolo_fast.ops import grid_weight


@pytest.mark.parametrize("B,E,S,S2,D", [(1, 1, 252, 252, 128), (2, 2, 7, 9, 16), (1, 2, 1, 1, 4)])
def test_reference_matches_the_definition(B, E, S, S2, D):
    g = torch.Generator().manual_seed(S)
    query, keys = torch.randn(B, S, D, generator=g), torch.randn(B, E, S2, D, generator=g)
    got = grid_weight(query, keys)
    assert got.shape == (B, S) and got.dtype == torch.float32
    q, k = query.double(), keys.double()
    want = torch.stack([torch.stack([
        torch.stack([torch.sigmoid(k[b, e] @ q[b, i]).max() for e in range(E)]).mean() for i in range(S)]) for b in range(B)])
    torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-7)


def test_bad_input():
    with pytest.raises(ValueError, match=r"keys must be \[B, E, S', D\]"):
        grid_weight(torch.zeros(1, 4, 8), torch.zeros(1, 2, 4, 7))
    with pytest.raises(ValueError, match="query must be"):
        grid_weight(torch.zeros(4, 8), torch.zeros(1, 2, 4, 8))
