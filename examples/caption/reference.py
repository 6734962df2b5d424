#!/usr/bin/python3
"""The caption task (docs/caption-task.md) in PyTorch, replayed on xtgrad-caption-dump's files.

    build/bin/xtgrad-caption-dump --out DIR [--seed S] [--steps K] [--train-size N]
    /usr/bin/python3 examples/caption/reference.py --dir DIR

(K = 40 by default: about 5 s for the dump and 10 s for this script.) The dump runs
`xtgrad-caption train --seed S --steps K --train-size N` (warm-up 5% of K, cosine to 0 at
K, every other setting at its default) in float, and again in double from the float
initial parameters widened, and writes the initial parameters, every batch (pictures,
token ids, padding) and both runs' per-step losses and final parameters. This script
builds the same model in torch (CaptionModel below: Conv2d/BatchNorm2d/ReLU/MaxPool2d,
row and column embeddings, nn.TransformerDecoder with pre-norm layers, causal
self-attention and cross-attention, final LayerNorm, Linear; cross_entropy with
ignore_index 0; AdamW with the same warm-up and cosine), loads the initial parameters,
trains on the same batches in float64 and float32, and prints each against xtgrad's
double and float runs: the per-step losses (largest relative difference) and the
parameters and BatchNorm buffers after K steps. Exit status 1 when the double losses
differ by more than --tolerance (1e-10, relative). Train mode, as train.cpp: BatchNorm on
the batch's statistics; the model has no dropout. The convolutions' biases sit right before
a BatchNorm, and the softmax ignores the attention's key biases, so their gradients are
rounding noise that AdamW scales up: they (and the running means) are the parameters that
differ most, without changing the loss; the worst of the rest is printed too.

bench/compare_torch.py times this CaptionModel against xtgrad-bench's caption_step.
"""
import argparse
import importlib.util
import json
import math
import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

VOCAB, PAD, BOS, EOS, GRID = 18, 0, 1, 2, 4


def load_safetensors(path):
    """name -> numpy array: examples/align/reference.py's reader, imported by path"""
    spec = importlib.util.spec_from_file_location(
        "align_reference", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "align", "reference.py"))
    align = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(align)
    return align.load_safetensors(path)


class CaptionModel(nn.Module):
    """examples/caption/model.hpp's model (image mode "attention"), with its parameter names."""

    def __init__(self, d=64, heads=4, layers=2, ff=256, max_sequence=15):
        super().__init__()
        widths, blocks = [3, 16, 32, d], []
        for i in range(3):
            blocks += [nn.Conv2d(widths[i], widths[i + 1], 3, padding=1), nn.BatchNorm2d(widths[i + 1]), nn.ReLU(),
                       nn.MaxPool2d(2)]
        self.cnn = nn.Sequential(*blocks)
        self.row_position = nn.Parameter(torch.randn(GRID, 1, d) * 0.02)
        self.column_position = nn.Parameter(torch.randn(1, GRID, d) * 0.02)
        self.blind_memory = nn.Parameter(torch.randn(1, 1, d) * 0.02)  # unused with attention, as ours
        self.token_embed = nn.Embedding(VOCAB, d, padding_idx=PAD)
        self.token_position = nn.Parameter(torch.randn(max_sequence, d) * 0.02)
        layer = nn.TransformerDecoderLayer(d, heads, ff, dropout=0.0, activation="gelu", layer_norm_eps=1e-5,
                                           batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, layers, norm=nn.LayerNorm(d, eps=1e-5))
        self.out = nn.Linear(d, VOCAB)

    def forward(self, images, inputs, padding):
        """images (B,3,32,32), inputs (B,L) ids, padding (B,L) True = <pad> -> logits (B,L,18)"""
        b, length = inputs.shape
        grid = self.cnn(images).permute(0, 2, 3, 1) + self.row_position + self.column_position  # (B,4,4,d)
        memory = grid.reshape(b, GRID * GRID, -1)  # (B,16,d)
        x = self.token_embed(inputs) + self.token_position[:length]
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool), 1)  # True = blocked
        return self.out(self.decoder(x, memory, tgt_mask=causal, tgt_key_padding_mask=padding))

    def loss(self, images, inputs, targets, padding):
        """the mean cross-entropy of the non-padding targets (B,L)"""
        logits = self.forward(images, inputs, padding)
        return F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1), ignore_index=PAD)

    def load_xtgrad(self, state):
        """our state_dict (numpy arrays, the same names) -> this module, in its dtype"""
        dtype = self.token_position.dtype
        self.load_state_dict({name: torch.from_numpy(np.ascontiguousarray(a)).to(
            torch.long if name.endswith("num_batches_tracked") else dtype) for name, a in state.items()})


def token_batch(captions):
    """model.cpp's token_batch: captions (lists of word ids) -> teacher-forced inputs
    <bos> w1..wn and targets w1..wn <eos>, (B,L) padded with <pad>, and the padding (B,L)"""
    length = max(len(c) for c in captions) + 1
    inputs = torch.full((len(captions), length), PAD, dtype=torch.long)
    targets = inputs.clone()
    for i, c in enumerate(captions):
        inputs[i, :len(c) + 1] = torch.tensor([BOS] + list(c))
        targets[i, :len(c) + 1] = torch.tensor(list(c) + [EOS])
    return inputs, targets, inputs == PAD


def lr_at(step, config):
    """the lr of step `step` (from 0): xtgrad's SequentialLR of LinearWarmup(w, 0.01) and
    CosineAnnealingLR(steps - w), milestone w (examples/common/training.hpp's warmup_cosine)"""
    lr, w, steps = config["lr"], config["warmup"], config["steps"]
    if step < w or steps <= w:
        return lr * (0.01 + (1.0 - 0.01) * min(step, w) / w)
    return lr * (1.0 + math.cos(math.pi * (step - w) / (steps - w))) / 2.0


def make_optimizer(model, config):
    return torch.optim.AdamW(model.parameters(), lr=lr_at(0, config), weight_decay=config["weight_decay"],
                             foreach=False)


class Dump:
    """xtgrad-caption-dump's files"""

    def __init__(self, d):
        self.dir = d
        self.config = json.load(open(f"{d}/config.json"))
        k, b = self.config["steps"], self.config["batch"]
        self.images = np.fromfile(f"{d}/images.f32", np.float32).reshape(k, b, 3, 32, 32)
        self.lengths = np.fromfile(f"{d}/lengths.i32", np.int32)
        ends = np.cumsum(b * self.lengths.astype(np.int64))
        self.inputs = np.split(np.fromfile(f"{d}/inputs.i32", np.int32).astype(np.int64), ends[:-1])
        self.targets = np.split(np.fromfile(f"{d}/targets.i32", np.int32).astype(np.int64), ends[:-1])
        self.padding = np.split(np.fromfile(f"{d}/padding.u8", np.uint8).astype(bool), ends[:-1])
        self.lrs = np.loadtxt(f"{d}/lrs.txt", ndmin=1)
        self.losses = {r: np.loadtxt(f"{d}/losses.{r}.txt", ndmin=1) for r in ("f32", "f64")}

    def batch(self, step, dtype):
        """step k (from 0) -> images (B,3,32,32), inputs, targets, padding (B,L)"""
        shape = (self.config["batch"], int(self.lengths[step]))
        return (torch.from_numpy(self.images[step]).to(dtype), torch.from_numpy(self.inputs[step].reshape(shape)),
                torch.from_numpy(self.targets[step].reshape(shape)), torch.from_numpy(self.padding[step].reshape(shape)))


def replay(dump, init, dtype):
    """K steps in torch from our initial parameters on our batches -> losses, final state"""
    c = dump.config
    model = CaptionModel(c["dim"], c["heads"], c["layers"], c["ff"], init["token_position"].shape[0]).to(dtype)
    model.load_xtgrad(init)
    model.train()
    optimizer = make_optimizer(model, c)
    losses = []
    for step in range(c["steps"]):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, c)
        optimizer.zero_grad()
        loss = model.loss(*dump.batch(step, dtype))
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
    return np.array(losses), {n: t.detach().numpy() for n, t in model.state_dict().items()}


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def report(name, losses, state, dump, after):
    """prints torch's run against xtgrad's float and double runs; returns the largest relative
    loss difference against each"""
    worst = {}
    for ref in ("f32", "f64"):
        d = np.abs(losses - dump.losses[ref]) / np.abs(dump.losses[ref])
        worst[ref] = float(d.max())
        print(f"   losses vs xtgrad {ref}: max relative diff {d.max():.2e} (step {int(d.argmax()) + 1}); "
              f"steps 1/{len(d) // 2}/{len(d)}: {d[0]:.1e} {d[len(d) // 2 - 1]:.1e} {d[-1]:.1e}")
    print(f"   parameters and buffers after {len(losses)} steps, max|diff|/max|ours|, worst three (vs xtgrad f32 | f64):")
    diffs = sorted(((rel(state[n], after["f64"][n]), rel(state[n], after["f32"][n]), n) for n in after["f64"]),
                   reverse=True)
    for d64, d32, n in diffs[:3]:
        print(f"     {n:44s} {d32:.2e} | {d64:.2e}")
    others = sorted(((rel(signal(n, state[n]), signal(n, after["f64"][n])),
                      rel(signal(n, state[n]), signal(n, after["f32"][n])), n)
                     for n in after["f64"] if not noise_only(n, after["f64"])), reverse=True)
    d64, d32, n = others[0]
    print(f"   the worst of the rest (no convolution bias, running mean or attention key bias): {n} {d32:.2e} | "
          f"{d64:.2e}")
    return worst


def noise_only(name, state):
    """a convolution's bias (a BatchNorm follows) or a running mean: its gradient is rounding noise"""
    module, _, kind = name.rpartition(".")
    return kind == "running_mean" or (kind == "bias" and state.get(f"{module}.weight", np.zeros(0)).ndim == 4)


def signal(name, a):
    """an attention's in_proj_bias without its key third (the softmax ignores a key bias, so its
    gradient is rounding noise too); any other array as it is"""
    if not name.endswith("in_proj_bias"):
        return a
    third = a.shape[0] // 3
    return np.concatenate([a[:third], a[2 * third:]])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", required=True, help="xtgrad-caption-dump's --out")
    ap.add_argument("--tolerance", type=float, default=1e-10, help="the largest relative double loss difference")
    args = ap.parse_args()
    torch.set_num_threads(1)
    load = load_safetensors
    dump = Dump(args.dir)
    k = dump.config["steps"]
    after = {"f32": load(f"{args.dir}/after_{k}.safetensors"), "f64": load(f"{args.dir}/after_{k}_f64.safetensors")}
    init = load(f"{args.dir}/init.safetensors")
    ours_lrs = dump.lrs
    ref_lrs = np.array([lr_at(s, dump.config) for s in range(k)])
    print(f"{k} steps, warm-up {dump.config['warmup']}; lr schedule vs xtgrad's: max relative diff "
          f"{rel(ref_lrs, ours_lrs):.1e}")
    worst = {}
    for dtype, name in ((torch.float64, "float64"), (torch.float32, "float32")):
        print(f"== torch {name}")
        losses, state = replay(dump, init, dtype)
        worst[name] = report(name, losses, state, dump, after)
    f32_vs_f64 = float((np.abs(dump.losses["f32"] - dump.losses["f64"]) / np.abs(dump.losses["f64"])).max())
    print(f"== xtgrad f32 vs xtgrad f64: losses max relative diff {f32_vs_f64:.2e}")
    ok = worst["float64"]["f64"] <= args.tolerance
    print(f"torch float64 vs xtgrad double: {worst['float64']['f64']:.2e} "
          f"{'<=' if ok else '>'} {args.tolerance:g}: {'agree' if ok else 'DIFFER'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
