#!/usr/bin/python3
"""The toy task (docs/align-task.md) in PyTorch, replayed on xtgrad-align-dump's files.

    build-ref/bin/xtgrad-align-dump --seed S --out DIR --steps K
    /usr/bin/python3 examples/align/reference.py --dir DIR --mode A [--steps K]
    /usr/bin/python3 examples/align/reference.py --dir DIR --mode B [--steps 2000] [--dtype float64]
    /usr/bin/python3 examples/align/reference.py --dir DIR --mode C --seed S

Mode A: from DIR/init.safetensors on the same batches: the first batch's scores and
gradients against DIR/scores0.* and DIR/grads0*.safetensors, the per-step losses against
DIR/losses.*.txt and the parameters after K steps against DIR/after_K*.safetensors; in
float32 and float64 (torch), each against xtgrad's float and double runs.
Mode B: trains from xtgrad's initial parameters on xtgrad's batches, P@1 and grounding on
the test split every 250 steps (one JSON line each).
Mode C: the same from PyTorch's own default initialisation (torch.manual_seed(S)).
"""
import argparse
import json
import math
import os
import struct
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

TRAIN, TEST, BATCH, STEPS, BLOCK = 20000, 1000, 32, 2000, 100


def load_safetensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = {"F32": np.float32, "F64": np.float64}[info["dtype"]]
        begin, end = info["data_offsets"]
        out[name] = np.frombuffer(data[begin:end], dtype=dtype).reshape(info["shape"]).copy()
    return out


class Data:
    def __init__(self, d):
        self.train_patches = np.fromfile(f"{d}/train_patches.f32", np.float32).reshape(TRAIN, 16, 192)
        self.train_captions = np.fromfile(f"{d}/train_captions.i32", np.int32).reshape(TRAIN, 4).astype(np.int64)
        self.test_patches = np.fromfile(f"{d}/test_patches.f32", np.float32).reshape(TEST, 16, 192)
        self.test_captions = np.fromfile(f"{d}/test_captions.i32", np.int32).reshape(TEST, 4).astype(np.int64)
        self.test_cells = np.fromfile(f"{d}/test_cells.i32", np.int32)
        self.test_match = np.fromfile(f"{d}/test_match.u8", np.uint8).reshape(TEST // BLOCK, BLOCK, BLOCK)
        self.batches = np.fromfile(f"{d}/batches.i32", np.int32).reshape(STEPS, BATCH).astype(np.int64)
        self.batch_match = np.fromfile(f"{d}/batch_match.u8", np.uint8).reshape(STEPS, BATCH, BATCH)


class AlignModel(nn.Module):
    """docs/align-task.md's default model, all pairs by batched products (also timed by bench/compare_torch.py)."""

    def __init__(self, d=64, heads=4):
        super().__init__()
        self.d, self.heads = d, heads
        self.patch_embed = nn.Linear(192, d)
        self.patch_position = nn.Parameter(torch.randn(16, d) * 0.02)
        self.token_embed = nn.Embedding(14, d)
        self.token_position = nn.Parameter(torch.randn(4, d) * 0.02)
        self.attention = nn.MultiheadAttention(d, heads, batch_first=True)
        self.norm = nn.LayerNorm(d)
        self.hidden = nn.Linear(d, d)
        self.score = nn.Linear(d, 1)

    def forward(self, patches, ids, need_weights=False):
        """patches (Bk,16,192), ids (Bq,4) -> scores (Bq,Bk), weights (h,Bq,4,Bk,16)"""
        image = self.patch_embed(patches) + self.patch_position
        tokens = self.token_embed(ids) + self.token_position
        bq, bk, h, d = tokens.shape[0], image.shape[0], self.heads, self.d
        dh = d // h
        w, b = self.attention.in_proj_weight, self.attention.in_proj_bias
        q = F.linear(tokens, w[:d], b[:d]).view(bq, 4, h, dh)
        k = F.linear(image, w[d:2 * d], b[d:2 * d]).view(bk, 16, h, dh)
        v = F.linear(image, w[2 * d:], b[2 * d:]).view(bk, 16, h, dh)
        scores = torch.einsum("qthc,kphc->hqtkp", q, k) / math.sqrt(dh)
        weights = scores.softmax(-1)
        attended = torch.einsum("hqtkp,kphc->qkthc", weights, v).reshape(bq, bk, 4, d)
        attended = self.attention.out_proj(attended)
        pooled = self.norm(tokens[:, None] + attended).mean(2)
        return self.score(F.gelu(self.hidden(pooled))).squeeze(-1), (weights if need_weights else None)

    # xtgrad names <-> ours
    def load_xtgrad(self, params):
        sd = {}
        for name, a in params.items():
            if name.startswith("attention.") and name.split(".")[1] in ("q_proj", "k_proj", "v_proj"):
                continue
            sd[name] = torch.from_numpy(np.ascontiguousarray(a))
        sd["attention.in_proj_weight"] = torch.from_numpy(np.concatenate(
            [params[f"attention.{p}_proj.weight"] for p in "qkv"]))
        sd["attention.in_proj_bias"] = torch.from_numpy(np.concatenate(
            [params[f"attention.{p}_proj.bias"] for p in "qkv"]))
        self.load_state_dict({k: v.to(self.token_position.dtype) for k, v in sd.items()})

    @staticmethod
    def to_xtgrad(named):
        """named: dict torch name -> array (parameters or gradients) -> xtgrad names"""
        out = {}
        for name, a in named.items():
            if name.startswith("attention.in_proj_"):
                kind = name.rsplit("_", 1)[1]
                for i, p in enumerate("qkv"):
                    out[f"attention.{p}_proj.{kind}"] = a[i * 64:(i + 1) * 64]
            else:
                out[name] = a
        return out


def batch_tensors(data, step, dtype):
    idx = data.batches[step]
    patches = torch.from_numpy(data.train_patches[idx]).to(dtype)
    ids = torch.from_numpy(data.train_captions[idx])
    m = torch.from_numpy(data.batch_match[step].astype(np.float64)).to(dtype)
    return patches, ids, m / m.sum(1, keepdim=True)


def loss_of(scores, targets):
    return torch.sum(-targets * F.log_softmax(scores, -1), -1).mean()


def evaluate(model, data, dtype):
    hits = grounded = 0
    with torch.no_grad():
        for blk in range(TEST // BLOCK):
            sl = slice(blk * BLOCK, (blk + 1) * BLOCK)
            patches = torch.from_numpy(data.test_patches[sl]).to(dtype)
            ids = torch.from_numpy(data.test_captions[sl])
            scores, weights = model(patches, ids, need_weights=True)  # weights (h,q,t,k,p)
            top = scores.argmax(1).numpy()
            hits += int(data.test_match[blk][np.arange(BLOCK), top].sum())
            r = torch.arange(BLOCK)
            own = weights[:, r, :, r, :]  # (BLOCK, h, 4, 16): caption i on image i
            attn = own.mean(1)[:, :2].mean(1)  # heads, then colour and shape tokens
            grounded += int((attn.argmax(1).numpy() == data.test_cells[sl]).sum())
    return hits / TEST, grounded / TEST


def make_model(args, dtype):
    if args.mode == "C":
        torch.manual_seed(args.seed)
        model = AlignModel()
    else:
        model = AlignModel()
        model.load_xtgrad(load_safetensors(args.init or f"{args.dir}/init.safetensors"))
    return model.to(dtype)


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def mode_a(args, data):
    k = args.steps
    ours = {"f32": np.loadtxt(f"{args.dir}/losses.f32.txt"), "f64": np.loadtxt(f"{args.dir}/losses.f64.txt")}
    k = min(k, len(ours["f32"]))
    after = {"f32": load_safetensors(f"{args.dir}/after_{k}.safetensors"),
             "f64": load_safetensors(f"{args.dir}/after_{k}_f64.safetensors")}
    grads0 = {"f32": load_safetensors(f"{args.dir}/grads0.safetensors"),
              "f64": load_safetensors(f"{args.dir}/grads0_f64.safetensors")}
    scores0 = {"f32": np.fromfile(f"{args.dir}/scores0.f32", np.float32).reshape(BATCH, BATCH),
               "f64": np.fromfile(f"{args.dir}/scores0.f64", np.float64).reshape(BATCH, BATCH)}
    for tdt, name in ((torch.float32, "f32"), (torch.float64, "f64")):
        model = make_model(args, tdt)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3, betas=(0.9, 0.999))
        losses = []
        for step in range(k):
            patches, ids, targets = batch_tensors(data, step, tdt)
            opt.zero_grad()
            scores, _ = model(patches, ids)
            loss = loss_of(scores, targets)
            losses.append(loss.item())
            loss.backward()
            if step == 0:
                print(f"== torch {name}: step-1 scores vs xtgrad f32 {rel(scores.detach(), scores0['f32']):.2e}, "
                      f"vs xtgrad f64 {rel(scores.detach(), scores0['f64']):.2e}")
                g = AlignModel.to_xtgrad({n: p.grad.numpy() for n, p in model.named_parameters()})
                print("   step-1 gradients, max|diff|/max|ours| per parameter (vs xtgrad f32 | f64):")
                for n in sorted(g):
                    print(f"     {n:28s} {rel(g[n], grads0['f32'][n]):.2e} | {rel(g[n], grads0['f64'][n]):.2e}")
            opt.step()
        losses = np.array(losses)
        for ref in ("f32", "f64"):
            d = np.abs(losses - ours[ref][:k])
            print(f"   losses vs xtgrad {ref}: max |diff| {d.max():.2e} (step {int(d.argmax()) + 1}); "
                  f"steps 1/10/{k}: {d[0]:.1e} {d[min(9, k - 1)]:.1e} {d[-1]:.1e}")
        p = AlignModel.to_xtgrad({n: q.detach().numpy() for n, q in model.named_parameters()})
        print(f"   parameters after {k} steps, max|diff|/max|ours| (vs xtgrad f32 | f64):")
        for n in sorted(p):
            print(f"     {n:28s} {rel(p[n], after['f32'][n]):.2e} | {rel(p[n], after['f64'][n]):.2e}")
    print(f"== xtgrad f32 vs xtgrad f64: losses max |diff| {np.abs(ours['f32'][:k] - ours['f64'][:k]).max():.2e}; "
          "parameters: " + ", ".join(f"{n} {rel(after['f32'][n], after['f64'][n]):.1e}" for n in sorted(after['f32'])))


def mode_train(args, data):
    dtype = torch.float64 if args.dtype == "float64" else torch.float32
    model = make_model(args, dtype)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, betas=(0.9, 0.999))
    total = 0.0
    for step in range(args.steps):
        patches, ids, targets = batch_tensors(data, step, dtype)
        opt.zero_grad()
        scores, _ = model(patches, ids)
        loss = loss_of(scores, targets)
        loss.backward()
        opt.step()
        total += loss.item()
        if (step + 1) % 250 == 0 or step + 1 == args.steps:
            p1, gr = evaluate(model, data, dtype)
            print(json.dumps({"mode": args.mode, "seed": args.seed, "init": args.init, "dtype": args.dtype, "step": step + 1,
                              "loss": round(total / 250, 6), "p_at_1": p1, "grounding": gr}), flush=True)
            total = 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--mode", choices="ABC", required=True)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--seed", type=int, default=0, help="torch.manual_seed for mode C (label only in B)")
    ap.add_argument("--init", help="initial parameters for modes A and B (default DIR/init.safetensors)")
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = Data(args.dir)
    if args.mode == "A":
        args.steps = args.steps or 50
        mode_a(args, data)
    else:
        args.steps = args.steps or STEPS
        mode_train(args, data)


if __name__ == "__main__":
    sys.exit(main())
