import torch

from contrastlab.evaluation.plots import embedding_scatter, pca_2d


def test_pca_finds_the_two_directions_of_largest_variance():
    torch.manual_seed(0)
    latent = torch.randn(500, 2) * torch.tensor([5.0, 2.0])
    basis = torch.linalg.qr(torch.randn(6, 6))[0][:2]  # two orthonormal directions in 6-D
    features = latent @ basis + 0.01 * torch.randn(500, 6) + 3.0
    points = pca_2d(features)
    assert points.shape == (500, 2)
    assert torch.allclose(points.std(0), torch.tensor([5.0, 2.0], dtype=points.dtype), rtol=0.1)
    assert abs(torch.corrcoef(torch.stack([points[:, 0].float(), latent[:, 0]]))[0, 1]) > 0.99


def test_the_scatter_colours_single_labels_and_draws_multi_label_data_plain():
    features = torch.randn(40, 8)
    coloured = embedding_scatter(features, torch.arange(40) % 4)
    assert len(coloured.axes) == 2  # the scatter and its class colour bar
    plain = embedding_scatter(features, torch.zeros(40, 3))
    assert len(plain.axes) == 1 and len(plain.axes[0].collections[0].get_offsets()) == 40
