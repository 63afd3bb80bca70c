"""with_cp recomputes blocks in backward without touching BN statistics."""
import pytest
import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmdet.registry import MODELS
from torch.nn.modules.batchnorm import _BatchNorm

import vovdet  # noqa: F401
from vovdet.models.layers import (checkpoint_keep_running_stats,
                                  keep_running_stats)

# One small BN model per backbone family that checkpoints its blocks.
BACKBONES = {
    'RepVGG-A0': dict(type='RepVGG', arch='A0'),
    # default drop_path_rate 0.2: the recomputation must replay the same
    # drop-path masks as the forward
    'EfficientNet-b0': dict(type='VoVDetEfficientNet', arch='b0'),
    'VoVNetV2-19-slim-dw': dict(type='VoVNet', arch='V2-19-slim-dw'),
    'DenseNet-121': dict(type='DenseNet', arch='121'),
}


def bn_forward_counter(model):
    """Count forward calls of every BN layer of ``model``."""
    calls = []
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            m.register_forward_hook(lambda *args: calls.append(1))
    return calls


def test_keep_running_stats_restores_every_bn():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4),
                          nn.Sequential(nn.BatchNorm2d(4)),
                          nn.GroupNorm(2, 4)).train()
    before = [b.clone() for b in model.buffers()]
    with keep_running_stats([model, model[2]]):
        model(torch.rand(2, 3, 4, 4))
        assert model[1].num_batches_tracked == 1
        assert not torch.equal(model[1].running_mean, before[0])
    for a, b in zip(model.buffers(), before, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_torch_checkpoint_alone_updates_bn_twice():
    """Why the helper exists: plain checkpointing updates BN twice."""
    bn = nn.BatchNorm2d(4).train()
    x = torch.rand(2, 4, 4, 4, requires_grad=True)
    cp.checkpoint(bn, x, use_reentrant=False).sum().backward()
    assert bn.num_batches_tracked == 2
    bn.reset_running_stats()
    checkpoint_keep_running_stats(bn, x, modules=[bn]).sum().backward()
    assert bn.num_batches_tracked == 1


@pytest.mark.parametrize('name', sorted(BACKBONES))
def test_with_cp_updates_bn_statistics_once(name):
    torch.manual_seed(0)
    plain = MODELS.build(dict(BACKBONES[name]))
    with_cp = MODELS.build(dict(BACKBONES[name], with_cp=True))
    with_cp.load_state_dict(plain.state_dict())
    plain.train()
    with_cp.train()
    x = torch.rand(2, 3, 32, 32)
    calls_plain = bn_forward_counter(plain)
    calls_cp = bn_forward_counter(with_cp)
    torch.manual_seed(1)
    out_plain = plain(x.clone().requires_grad_())
    torch.manual_seed(1)
    out_cp = with_cp(x.clone().requires_grad_())
    for a, b in zip(out_plain, out_cp, strict=True):
        torch.testing.assert_close(a, b)
    sum(o.sum() for o in out_plain).backward()
    sum(o.sum() for o in out_cp).backward()
    # the checkpointed BNs really ran again in backward ...
    assert len(calls_cp) > len(calls_plain)
    # ... yet every running mean/var/count equals the plain model's
    buffers_plain = dict(plain.named_buffers())
    buffers_cp = dict(with_cp.named_buffers())
    assert buffers_plain.keys() == buffers_cp.keys()
    for key, value in buffers_plain.items():
        torch.testing.assert_close(buffers_cp[key], value, msg=key)
    counts = {int(m.num_batches_tracked) for m in with_cp.modules()
              if isinstance(m, _BatchNorm)}
    assert counts == {1}
    for (key, p), q in zip(plain.named_parameters(), with_cp.parameters(),
                           strict=True):
        torch.testing.assert_close(q.grad, p.grad, msg=key)
