"""Networks: distinct-row sharing of embeddings gives the same output as per-cell work."""

import pytest
import torch

from scvi_diffusion.module._networks import NoisyLatentClassifier, SkipMLPDenoiser, distinct_rows


def test_distinct_rows():
    keys = torch.tensor([[5, 1, 0], [5, 2, 0], [5, 1, 0], [5, 3, 3], [5, 2, 0], [5, 1, 0]])
    rows, index = distinct_rows(keys)
    assert rows.shape[0] == 3
    torch.testing.assert_close(rows[index], keys)
    single, index = distinct_rows(torch.full((7, 1), 4))
    assert single.tolist() == [[4]] and index is None
    all_distinct = torch.arange(6).view(-1, 1)
    same, index = distinct_rows(all_distinct)
    assert index is None and torch.equal(same, all_distinct)


@pytest.mark.parametrize("n_classes", [(), (3, 2)])
def test_denoiser_shares_embeddings_without_changing_its_output(n_classes):
    torch.manual_seed(0)
    net = SkipMLPDenoiser(6, hidden_dims=(32, 16, 8), n_classes=n_classes).eval()
    x = torch.randn(40, 6)
    labels = None
    if n_classes:
        labels = torch.stack([torch.randint(0, k + 1, (40,)) for k in n_classes], dim=1)
    t = torch.full((40,), 137)
    shared = net(x, t, labels)  # few distinct (t, labels) rows: computed once each
    # the same cells among many distinct timesteps take the per-cell path
    others = torch.randn(100, 6)
    other_t = torch.randint(0, 1000, (100,))
    other_labels = None
    if n_classes:
        other_labels = torch.stack([torch.randint(0, k + 1, (100,)) for k in n_classes], dim=1)
        labels = torch.cat([labels, other_labels])
    per_cell = net(torch.cat([x, others]), torch.cat([t, other_t]), labels)[:40]
    torch.testing.assert_close(shared, per_cell, rtol=1e-5, atol=1e-6)


def test_classifier_shares_the_time_embedding():
    torch.manual_seed(0)
    clf = NoisyLatentClassifier(5, 4, hidden_dims=(16, 8)).eval()
    x = torch.randn(30, 5)
    shared = clf(x, torch.full((30,), 42))
    per_cell = clf(
        torch.cat([x, torch.randn(60, 5)]),
        torch.cat([torch.full((30,), 42), torch.randint(0, 999, (60,))]),
    )
    torch.testing.assert_close(shared, per_cell[:30], rtol=1e-5, atol=1e-6)
