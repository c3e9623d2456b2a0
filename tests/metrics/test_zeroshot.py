"""Zero-shot classification from class prompts: prompts, per-class template averages, scores and metrics."""

import pytest
import torch
import torch.nn.functional as F

from contrastlab.metrics.zeroshot import class_embeddings, class_prompts, zero_shot_metrics, zero_shot_scores


def test_prompts_are_class_major_and_need_a_label_slot():
    assert class_prompts(["cat", "dog"], ["a {label}", "the {label}"]) == ["a cat", "the cat", "a dog", "the dog"]
    with pytest.raises(ValueError, match="no {label}"):
        class_prompts(["cat"], ["a photo"])


def test_class_embeddings_average_normalised_templates_and_scores_are_cosines():
    torch.manual_seed(0)
    prompts = torch.randn(6, 4)  # 3 classes x 2 templates
    classes = class_embeddings(prompts, 3)
    for c in range(3):
        expected = F.normalize(F.normalize(prompts[2 * c : 2 * c + 2], dim=1).mean(dim=0), dim=0)
        assert torch.allclose(classes[c], expected, atol=1e-6)
    x = torch.randn(5, 4)
    scores = zero_shot_scores(x, classes)
    assert torch.allclose(scores[1, 2], F.cosine_similarity(x[1], classes[2], dim=0), atol=1e-6)


def test_zero_shot_metrics_single_and_multi_label():
    scores = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.6, 0.4]])
    assert zero_shot_metrics(scores, torch.tensor([0, 1, 1, -1]))["accuracy"] == pytest.approx(2 / 3)
    multi = zero_shot_metrics(scores, torch.tensor([[1, 0], [0, 1], [1, 0], [0, -1]]))
    assert multi["auroc"] == pytest.approx(1.0) and 0 < multi["map"] <= 1
