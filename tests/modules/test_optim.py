import copy
import math

import pytest
import timm.optim
import torch
import yaml
from torch import nn

from contrastlab.errors import ConfigError
from contrastlab.modules.core import optim
from tests.conftest import REPO


def test_warmup_then_cosine():
    f = optim.warmup_cosine(total_steps=110, warmup_steps=10, min_ratio=0.1)
    assert f(0) == pytest.approx(0.1)
    assert f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(110) == pytest.approx(0.1)


def test_no_weight_decay_on_biases_and_norms():
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    probe = model[2]
    decay, no_decay = optim.param_groups(model, 0.1, exclude=[probe])
    assert [p.shape for p in decay["params"]] == [(8, 4)]
    assert {tuple(p.shape) for p in no_decay["params"]} == {(8,)}
    assert no_decay["weight_decay"] == 0.0 and no_decay["lars_exclude"]


def lars_groups(wd=0.01):
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(5, 3))
    b = nn.Parameter(torch.randn(5))
    w.grad, b.grad = torch.randn(5, 3), torch.randn(5)
    groups = [{"params": [w], "weight_decay": wd}, {"params": [b], "weight_decay": 0.0, "lars_exclude": True}]
    return w, b, groups


@pytest.mark.parametrize("wd", [0.01, 0.0])
def test_lars_is_timms_with_the_papers_trust_ratio_and_plain_sgd_for_excluded_groups(wd):
    w, b, groups = lars_groups(wd)
    w0, b0, gw, gb = w.detach().clone(), b.detach().clone(), w.grad.clone(), b.grad.clone()
    lr, eta = 0.5, 0.02
    opt = optim.build_optimizer(optim.OptimizerConfig(name="lars", lr=lr, weight_decay=wd, lars_eta=eta), groups, lr)
    assert isinstance(opt, timm.optim.Lars)
    opt.step()
    g = gw + wd * w0
    trust = eta * w0.norm() / (gw.norm() + wd * w0.norm() + 1e-8)  # You et al. 2017, eq. 6
    assert torch.allclose(w, w0 - lr * trust * g)  # adapted even without weight decay, as before timm
    assert torch.allclose(b, b0 - lr * gb)  # excluded: plain SGD


def test_lars_resumes_an_optimizer_state_saved_by_our_earlier_lars():
    config = optim.OptimizerConfig(name="lars", lr=0.5, weight_decay=0.01, lars_eta=0.02)
    w, b, groups = lars_groups()
    fresh = optim.build_optimizer(config, groups, 0.5)
    fresh.step()
    state = copy.deepcopy(fresh.state_dict())  # not the live momentum buffers
    old_keys = ("lr", "momentum", "weight_decay", "params")
    state["param_groups"] = [  # the groups as contrastlab's own LARS saved them
        {**{k: g[k] for k in old_keys}, "eta": 0.02, "lars_exclude": not g["always_adapt"]}
        for g in state["param_groups"]
    ]
    w2, b2, groups2 = lars_groups()
    resumed = optim.build_optimizer(config, groups2, 0.5)
    resumed.load_state_dict(state)
    with torch.no_grad():
        w2.copy_(w), b2.copy_(b)
    for opt, (wi, bi) in ((fresh, (w, b)), (resumed, (w2, b2))):
        wi.grad, bi.grad = torch.ones_like(wi), torch.ones_like(bi)
        opt.step()
    assert torch.equal(w, w2) and torch.equal(b, b2)
    assert [g["always_adapt"] for g in resumed.param_groups] == [True, False]


def lars_configs() -> list[tuple[str, optim.OptimizerConfig]]:
    """(folder/file, optimiser) of every shipped config that trains with LARS."""
    found = []
    for path in sorted((REPO / "configs").glob("*/*.yaml")):
        model = yaml.safe_load(path.read_text()).get("model") or {}
        settings = (model.get("init_args") or {}).get("optimizer") or {}
        if settings.get("name") == "lars":
            found.append((f"{path.parent.name}/{path.name}", optim.OptimizerConfig(**settings)))
    return found


def test_lars_steps_as_simclrs_form_at_the_configs_weight_decay():
    """SimCLR's and BYOL's code divide by ||g + wd w|| rather than ||g|| + wd ||w||: one step of our LARS, built as
    each LARS config builds it (its lr, eta, momentum and weight decay, 1e-6 to 1e-4), with gradients 1% of the
    weights' norm, is SimCLR's step to under 1%."""
    configs = lars_configs()
    assert len({config.weight_decay for _, config in configs}) >= 2, configs  # the configs span several decays
    for name, config in configs:
        torch.manual_seed(0)
        layer = nn.Linear(64, 64, bias=False)
        w0 = layer.weight.detach().clone()
        g = torch.randn_like(w0)
        layer.weight.grad = g / g.norm() * w0.norm() * 0.01
        opt = optim.build_optimizer(config, optim.param_groups(layer, config.weight_decay), config.lr)
        opt.step()
        d = layer.weight.grad + config.weight_decay * w0
        simclrs = config.lr * config.lars_eta * w0.norm() / d.norm() * d  # SimCLR's lars_optimizer.py, first step
        ours = w0 - layer.weight.detach()
        assert ((ours - simclrs).norm() / simclrs.norm()).item() < 0.01, name


def test_bad_optimizer_values_name_the_key():
    with pytest.raises(ConfigError, match="model.optimizer.lr"):
        optim.OptimizerConfig(lr=0)
    with pytest.raises(ConfigError, match="model.optimizer.predictor_lr_ratio must be > 0"):
        optim.OptimizerConfig(predictor_lr_ratio=0)
    assert optim.OptimizerConfig(lr=0.3, lr_scaling="linear").peak_lr(512) == pytest.approx(0.6)
