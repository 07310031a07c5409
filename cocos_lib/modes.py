"""Module modes for one block: train / eval, and dropout off (RL steps compare one network with itself).

    with mode(model, False): ...                  # eval (generation), then back to what it was
    with mode(model, True), dropout_off(model): ...  # an RL step: train mode, no dropout
"""
from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def mode(model, training: bool):
    """model.train(training) in the block (eval when False), then back to the mode it had."""
    was_training = model.training
    model.train(training)
    try:
        yield model
    finally:
        model.train(was_training)


_DROPOUTS = (torch.nn.Dropout, torch.nn.Dropout1d, torch.nn.Dropout2d, torch.nn.Dropout3d,
             torch.nn.AlphaDropout, torch.nn.FeatureAlphaDropout)


@contextlib.contextmanager
def dropout_off(*models):
    """In the block, no dropout anywhere in `models` (None entries skipped): every nn.Dropout
    module (peft's lora_dropout included) in eval mode and HF attention layers' functional
    dropout (their `attention_dropout` rate) at 0. Nothing else changes mode: HF gradient
    checkpointing only runs in train mode, so the models are not put in eval(). Restored after.
    Enter it after any model.train() / eval(): those reset every submodule's mode."""
    saved = []
    for model in models:
        for m in model.modules() if model is not None else ():
            if isinstance(m, _DROPOUTS):
                saved.append((m, "training", m.training))
                m.training = False
            rate = getattr(m, "attention_dropout", None)
            if isinstance(rate, float) and rate > 0:
                saved.append((m, "attention_dropout", rate))
                m.attention_dropout = 0.0
    try:
        yield
    finally:
        for m, name, value in reversed(saved):
            setattr(m, name, value)
