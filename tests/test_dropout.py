"""The preference model's cheap CPU dropout: what it drops, its gradient, and that a
model trained with it saves and loads like one with torch's own dropout."""

from __future__ import annotations

import torch
from torch import nn
from transformers import BertModel

from core.models.bert import ModelConfig, PreferenceModel
from core.models.dropout import CheapDropout, use_cheap_dropout


def test_drops_the_asked_share_and_keeps_the_mean():
    torch.manual_seed(0)
    drop = CheapDropout(0.2).train()
    x = torch.ones(200, 50, 64)
    out = drop(x)
    dropped = (out == 0).float().mean().item()
    assert abs(dropped - 51 / 256) < 0.005  # round(0.2 * 256) of every 256 bytes
    assert abs(out.mean().item() - 1.0) < 0.01  # kept elements scaled up
    values = out.unique()
    assert len(values) == 2 and values[0] == 0 and abs(values[1].item() - 256 / 205) < 1e-6


def test_gradient_is_the_mask_it_applied():
    torch.manual_seed(0)
    drop = CheapDropout(0.3).train()
    x = torch.randn(40, 30, requires_grad=True)
    out = drop(x)
    out.sum().backward()
    kept = out.detach() != 0
    scale = 256 / (256 - round(0.3 * 256))
    assert torch.allclose(x.grad, kept.float() * scale)
    assert torch.allclose(out.detach()[kept], x.detach()[kept] * scale)


def test_eval_mode_and_zero_rate_change_nothing():
    x = torch.randn(8, 16)
    assert torch.equal(CheapDropout(0.2).eval()(x), x)
    assert torch.equal(CheapDropout(0.0).train()(x), x)


def test_same_seed_drops_the_same_elements():
    masks = []
    for _ in range(2):
        torch.manual_seed(7)
        drop = CheapDropout(0.2).train()
        masks.append(drop(torch.ones(64, 64)) == 0)
    assert torch.equal(masks[0], masks[1])
    assert masks[0].any()


def test_model_uses_it_everywhere_with_the_same_weights():
    config = ModelConfig(n_items=30, max_len=10, hidden=16, heads=2, dropout=0.2)
    model = PreferenceModel(config)
    plain = BertModel(config.bert_config(), add_pooling_layer=False)
    assert not [m for m in model.modules() if type(m) is nn.Dropout]
    cheap = [m for m in model.encoder.modules() if isinstance(m, CheapDropout)]
    assert len(cheap) == sum(isinstance(m, nn.Dropout) for m in plain.modules())
    assert all(m.p == 0.2 for m in cheap)
    assert model.encoder.state_dict().keys() == plain.state_dict().keys()
    # attention layers hand the rate to scaled_dot_product_attention: it is unchanged
    assert model.encoder.encoder.layer[0].attention.self.dropout.p == 0.2
    # in eval mode the model is deterministic, as with torch's dropout
    model.eval()
    items = torch.tensor([[0, 3, 4, 5, config.mask_index]])
    assert torch.equal(model.next_item_logits(items), model.next_item_logits(items))
    assert use_cheap_dropout(nn.Sequential(nn.Dropout(0.1)))[0].p == 0.1
