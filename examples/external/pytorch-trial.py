#!/usr/bin/env python3
"""An external Shoal trial in PyTorch: a small MLP on random data, trained with the parameters the
search chose. Shoal starts this script once per trial, writes the trial's parameters as a JSON
object to its stdin (also in $SHOAL_TRIAL_PARAMS), and reads the metric lines it prints:

    SHOAL_METRIC {"step": 100, "split": "validation", "accuracy": 0.93, "loss": 0.21}

`split` defaults to "validation"; `step` is the budget used so far (ASHA and curve stopping
compare trials at equal steps). When the search stops the trial early, Shoal sends SIGTERM.
Needs `pip install torch`; see examples/external-search.toml for the search that drives it.
"""
import json
import os
import sys

import torch
from torch import nn

params = json.loads(sys.stdin.readline() or os.environ.get("SHOAL_TRIAL_PARAMS", "{}"))
lr = float(params.get("lr", 0.01))
width = int(params.get("width", 64))
steps = 300

torch.manual_seed(0)
x = torch.randn(2048, 20)
y = (x[:, :5].sum(dim=1) > 0).long()
train_x, val_x, train_y, val_y = x[:1600], x[1600:], y[:1600], y[1600:]
model = nn.Sequential(nn.Linear(20, width), nn.ReLU(), nn.Linear(width, 2))
opt = torch.optim.Adam(model.parameters(), lr=lr)
loss_fn = nn.CrossEntropyLoss()

for step in range(1, steps + 1):
    idx = torch.randint(0, len(train_x), (64,))
    loss = loss_fn(model(train_x[idx]), train_y[idx])
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step % 30 == 0:
        with torch.no_grad():
            out = model(val_x)
            val_loss = loss_fn(out, val_y).item()
            acc = (out.argmax(dim=1) == val_y).float().mean().item()
        print("SHOAL_METRIC " + json.dumps({"step": step, "total_steps": steps, "accuracy": acc, "loss": val_loss}), flush=True)
