"""The embedding queue: first-in first-out with wrap-around, nearest neighbours, and its size check."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from contrastlab.errors import ConfigError
from contrastlab.modules.core.memory import EmbeddingQueue, check_queue_fits_data


def keys(start: int, n: int, dim: int = 3) -> torch.Tensor:
    """n distinct unit rows, recognisable by their first coordinate's order."""
    rows = torch.zeros(n, dim)
    rows[:, 0] = torch.arange(start, start + n, dtype=torch.float)
    rows[:, 1] = 1.0
    return F.normalize(rows, dim=1)


def test_enqueue_fills_then_wraps_around_overwriting_the_oldest():
    queue = EmbeddingQueue(size=5, dim=3)
    assert queue.contents().shape == (0, 3)
    queue.enqueue(keys(0, 3))
    assert torch.allclose(queue.contents(), keys(0, 3)) and int(queue.pointer) == 3 and int(queue.filled) == 3
    queue.enqueue(keys(3, 4))  # slots 3, 4, then 0, 1: keys 0 and 1 are the oldest and go
    assert int(queue.pointer) == 2 and int(queue.filled) == 5
    expected = torch.cat([keys(5, 2), keys(2, 1), keys(3, 2)])
    assert torch.allclose(queue.contents(), expected)


def test_more_keys_than_slots_keeps_the_newest():
    queue = EmbeddingQueue(size=3, dim=3)
    queue.enqueue(keys(0, 7))
    assert {round(v, 4) for v in queue.contents()[:, 0].tolist()} == {round(v, 4) for v in keys(4, 3)[:, 0].tolist()}
    assert int(queue.filled) == 3


def test_enqueue_normalises_and_keeps_no_gradient():
    queue = EmbeddingQueue(size=4, dim=2)
    x = torch.tensor([[3.0, 4.0]], requires_grad=True)
    queue.enqueue(x * 2)
    assert not queue.embeddings.requires_grad
    assert torch.allclose(queue.contents(), torch.tensor([[0.6, 0.8]]))


def test_contents_is_a_copy_so_a_later_enqueue_keeps_the_loss_graph():
    queue = EmbeddingQueue(size=4, dim=2)
    queue.enqueue(torch.randn(4, 2))
    q = torch.randn(3, 2, requires_grad=True)
    loss = (q @ queue.contents().T).sum()
    queue.enqueue(torch.randn(2, 2))
    loss.backward()  # would fail with "modified by an inplace operation" on a view of the buffer


def test_nearest_returns_the_most_similar_stored_embedding():
    queue = EmbeddingQueue(size=8, dim=2)
    angles = torch.linspace(0, 3, 8)
    stored = torch.stack([angles.cos(), angles.sin()], dim=1)
    queue.enqueue(stored)
    queries = torch.stack([(angles + 0.1).cos(), (angles + 0.1).sin()], dim=1) * 3
    assert torch.allclose(queue.nearest(queries), stored)


def test_nearest_of_an_empty_queue_is_the_query_itself():
    queue = EmbeddingQueue(size=8, dim=2)
    z = torch.tensor([[0.0, 2.0]])
    assert torch.allclose(queue.nearest(z), torch.tensor([[0.0, 1.0]]))


def test_bad_size_and_a_queue_larger_than_the_data():
    with pytest.raises(ConfigError, match="model.init_args.queue_size"):
        EmbeddingQueue(0, 4)

    class Data:
        info = SimpleNamespace(name="tiny")

        def split(self, name):
            return range(100)

    check_queue_fits_data(100, SimpleNamespace(datamodule=Data()))
    with pytest.raises(ConfigError, match=r"queue_size=101 is larger than the 100 training samples of tiny"):
        check_queue_fits_data(101, SimpleNamespace(datamodule=Data()))
    check_queue_fits_data(10**6, SimpleNamespace(datamodule=None))  # plain dataloaders: nothing to check against
