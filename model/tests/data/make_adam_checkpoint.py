"""Generates adam_checkpoint.pth (a few KB): the official `save_model` layout
{'epoch', 'state_dict', 'optimizer'} with a real Adam state (ints as dict keys, floats, bools,
None, tuples, lists, tensor 'step' values), so the .pth reader is tested on everything an official
checkpoint's optimizer entry contains. Run with the bench venv:
    .cache/bench-venv/bin/python model/tests/data/make_adam_checkpoint.py
"""
import os

import torch

torch.manual_seed(0)
m = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
opt = torch.optim.Adam(m.parameters(), lr=1e-3, betas=(0.9, 0.995), weight_decay=1e-4)
loss = m(torch.randn(4, 3)).pow(2).sum()
loss.backward()
opt.step()
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "adam_checkpoint.pth")
torch.save({"epoch": 7, "state_dict": m.state_dict(), "optimizer": opt.state_dict(), "best_acc": 0.5}, out)
for k, v in m.state_dict().items():
    print(k, list(v.shape), v.flatten()[:3].tolist())
