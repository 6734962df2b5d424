#!/usr/bin/python3
"""The xtgrad-bench cases in PyTorch, side by side with xtgrad, in one run.

    /usr/bin/python3 bench/compare_torch.py [--threads N] [--bench build/bin/xtgrad-bench] [--case NAME]
                                            [--torch-default-malloc]

Runs xtgrad-bench for each case, then the same computation in PyTorch (Debian's
python3-torch, CPU) with the same thread count, shapes and repeats, and prints a table of
medians: xtgrad ms, PyTorch ms and their ratio. A training step is forward, backward and
an Adam step (lr 1e-3) with loss = mean of the squared output, as in the bench.

Both run on the same BLAS kernels: xtgrad-bench says which OpenBLAS core it ended up with
(picked by OpenBLAS, by the user's OPENBLAS_CORETYPE, or by xtgrad when OpenBLAS fell back
to a generic one), and this script sets OPENBLAS_CORETYPE to that core before torch loads
OpenBLAS. The first lines say what each one ran. Both also keep freed memory for reuse:
xtgrad-bench calls xtgrad::reuse_freed_memory(), and this script makes the same two
mallopt calls for torch (without them torch's 1 MiB tensors are mapped and faulted in at
every step: align_step alone took 8.4-9.7 ms instead of 7.1-7.2). --torch-default-malloc
leaves torch with glibc's defaults, as a PyTorch user gets it without tuning.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bench", default="build/bin/xtgrad-bench")
    parser.add_argument("--case")
    parser.add_argument("--torch-default-malloc", action="store_true",
                        help="leave torch's process with glibc's default malloc settings")
    return parser.parse_args()


ARGS = parse_args()
# torch.set_num_threads does not reach the OpenBLAS that Debian's torch calls for matmul:
# without these, "one thread" would be two for every product.
os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)
MACHINE = json.loads(subprocess.run([ARGS.bench, "--machine"], check=True, capture_output=True,
                                    text=True).stdout.splitlines()[0])["machine"]
os.environ.setdefault("OPENBLAS_CORETYPE", MACHINE["blas_core"])  # the same kernels for torch


def reuse_freed_memory(largest_reused_bytes=16 << 20):
    """glibc's malloc as xtgrad::reuse_freed_memory() sets it: blocks up to 16 MiB from the
    heap, and up to four times that kept free at its top. True when glibc took both."""
    import ctypes
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return mallopt(M_MMAP_THRESHOLD, largest_reused_bytes) == 1 and \
        mallopt(M_TRIM_THRESHOLD, 4 * largest_reused_bytes) == 1


TORCH_REUSES_FREED_MEMORY = not ARGS.torch_default_malloc and reuse_freed_memory()

import torch  # noqa: E402  (after the thread settings)
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def median_ms(fn, repeats):
    for _ in range(max(2, repeats // 10)):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def training_step(params, loss_of, repeats):
    opt = torch.optim.Adam(params, lr=1e-3)

    def step():
        opt.zero_grad()
        loss = loss_of()
        loss.backward()
        opt.step()

    return median_ms(step, repeats)


def matmul_256(repeats):
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    return median_ms(lambda: torch.matmul(a, b), repeats)


def mha(b, lq, lk, width, heads, repeats):
    attn = nn.MultiheadAttention(width, heads, batch_first=True)
    q, kv = torch.randn(b, lq, width), torch.randn(b, lk, width)
    # need_weights=False: the fused path a training loop uses
    return training_step(list(attn.parameters()),
                         lambda: attn(q, kv, kv, need_weights=False)[0].pow(2).mean(), repeats)


class CrossAttention(nn.Module):
    """The seed article's class, verbatim."""

    def __init__(self, dim_query, dim_key, dim_value, dim_output):
        super().__init__()
        self.query_linear = nn.Linear(dim_query, dim_output)
        self.key_linear = nn.Linear(dim_key, dim_output)
        self.value_linear = nn.Linear(dim_value, dim_output)
        self.output_linear = nn.Linear(dim_output, dim_output)

    def forward(self, query, key, value):
        Q = self.query_linear(query)
        K = self.key_linear(key)
        V = self.value_linear(value)
        attention_scores = torch.matmul(Q, K.transpose(-2, -1)) / (K.size(-1) ** 0.5)
        attention_weights = F.softmax(attention_scores, dim=-1)
        context = torch.matmul(attention_weights, V)
        return self.output_linear(context), attention_weights


def attn_seed(repeats):
    attn = CrossAttention(128, 256, 256, 512)
    q, k, v = torch.randn(2, 4, 128), torch.randn(2, 6, 256), torch.randn(2, 6, 256)
    return training_step(list(attn.parameters()), lambda: attn(q, k, v)[0].pow(2).mean(), repeats)


def overhead(repeats):
    x = torch.ones(8, requires_grad=True)

    def run():
        y = x
        for _ in range(200):
            y = torch.tanh(y * 1.01 + 0.1) - 0.01 * y
        y.sum().backward()

    return median_ms(run, repeats)


def conv_small(repeats):
    conv1, conv2 = nn.Conv2d(3, 32, 3, padding=1), nn.Conv2d(32, 64, 3, stride=2, padding=1)
    x = torch.randn(32, 3, 32, 32)
    params = list(conv1.parameters()) + list(conv2.parameters())
    return training_step(params, lambda: conv2(F.relu(conv1(x))).pow(2).mean(), repeats)


def lstm_small(repeats):
    lstm = nn.LSTM(64, 128)
    x = torch.randn(16, 32, 64)
    return training_step(list(lstm.parameters()), lambda: lstm(x)[0].pow(2).mean(), repeats)


def decoder_layer(repeats):
    layer = nn.TransformerDecoderLayer(128, 4, dim_feedforward=512, dropout=0.0, batch_first=True)
    tgt, memory = torch.randn(32, 16, 128), torch.randn(32, 16, 128)
    causal = torch.triu(torch.ones(16, 16, dtype=torch.bool), 1)  # True = blocked, PyTorch's convention
    return training_step(list(layer.parameters()), lambda: layer(tgt, memory, tgt_mask=causal).pow(2).mean(), repeats)


def decode_16(repeats):
    """Greedy decoding as xtgrad-bench's decode_16; PyTorch's layer has no key/value cache,
    so it recomputes the prefix at every step."""
    embed, head = nn.Embedding(100, 128), nn.Linear(128, 100)
    layer = nn.TransformerDecoderLayer(128, 4, dim_feedforward=512, dropout=0.0, batch_first=True).eval()
    memory = torch.randn(8, 16, 128)

    def decode():
        with torch.no_grad():
            tokens = torch.zeros(8, 1, dtype=torch.long)
            for t in range(16):
                causal = torch.triu(torch.ones(t + 1, t + 1, dtype=torch.bool), 1)
                h = layer(embed(tokens), memory, tgt_mask=causal)[:, -1:]
                tokens = torch.cat([tokens, head(h).argmax(-1)], 1)

    return median_ms(decode, repeats)


# The toy task's model in torch, shared with the training replay (examples/align/reference.py).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "align"))
from reference import AlignModel  # noqa: E402


def align_step(repeats):
    torch.manual_seed(0)
    model = AlignModel()
    patches = torch.rand(32, 16, 192)
    ids = torch.randint(0, 14, (32, 4))
    # the soft targets: uniform over matching images (here: each caption its own image and
    # a few others, as in a real batch)
    targets = torch.eye(32)
    targets[0, 5] = targets[3, 7] = targets[10, 2] = 1
    targets = targets / targets.sum(1, keepdim=True)
    return training_step(list(model.parameters()),
                         lambda: torch.sum(-targets * F.log_softmax(model(patches, ids)[0], -1), -1).mean(), repeats)


def _reference(task):
    """examples/TASK/reference.py, imported by path (align's is imported as "reference")."""
    import importlib.util
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", task, "reference.py")
    spec = importlib.util.spec_from_file_location(f"{task}_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def caption_step(repeats):
    """one step of the caption task's model as xtgrad-bench's caption_step: train mode
    (BatchNorm on batch statistics), AdamW lr 2e-3, weight decay 0.01, one fixed batch of 32
    random pictures and random captions of 4, 9 and 14 words in turn"""
    ref = _reference("caption")
    torch.manual_seed(0)
    model = ref.CaptionModel().train()
    images = torch.rand(32, 3, 32, 32)
    inputs, targets, padding = ref.token_batch([torch.randint(3, 18, (4 + 5 * (i % 3),)).tolist() for i in range(32)])
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)

    def step():
        opt.zero_grad()
        loss = model.loss(images, inputs, targets, padding)
        loss.item()  # train_step reads the loss
        loss.backward()
        opt.step()

    return median_ms(step, repeats)


def vqa_step(repeats):
    """one step of the VQA task's default model as xtgrad-bench's vqa_step: train mode, AdamW
    lr 2e-3, weight decay 0.01, one fixed batch of 64 random pictures, random questions of 4
    to 10 words and answers b % 20 -> (ms, the model's parameter count)"""
    ref = _reference("vqa")
    torch.manual_seed(0)
    model = ref.VqaModel().train()
    images = torch.rand(64, 3, 32, 32)
    ids, lengths = ref.question_batch([torch.randint(1, 32, (4 + i % 7,)).tolist() for i in range(64)])
    answers = torch.arange(64) % 20
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)

    def step():
        opt.zero_grad()
        loss = model.loss(images, ids, lengths, answers)
        loss.item()  # train_step reads the loss
        loss.backward()
        opt.step()

    return median_ms(step, repeats), sum(p.numel() for p in model.parameters())


CASES = {
    "matmul_256": (matmul_256, 200),
    "attn_small": (lambda r: mha(32, 16, 64, 128, 4, r), 50),
    "attn_seed": (attn_seed, 200),
    "attn_large": (lambda r: mha(16, 128, 256, 512, 8, r), 10),
    "overhead_1000_ops": (overhead, 200),
    "align_step": (align_step, 50),
    "caption_step": (caption_step, 20),
    "vqa_step": (vqa_step, 20),
    "conv_small": (conv_small, 20),
    "lstm_small": (lstm_small, 20),
    "decoder_layer": (decoder_layer, 20),
    "decode_16": (decode_16, 20),
}


def torch_blas_core():
    """The core of the OpenBLAS this process loaded (for torch), or a reason why not known."""
    import ctypes
    libs = sorted({line.split()[-1] for line in open("/proc/self/maps") if "blas" in line.split()[-1]})
    for path in libs:
        try:
            corename = ctypes.CDLL(path).openblas_get_corename
        except (OSError, AttributeError):
            continue
        corename.restype = ctypes.c_char_p
        return f"{corename().decode()} ({os.path.basename(path)})"
    return "unknown (no OpenBLAS loaded: " + (", ".join(libs) or "no BLAS library") + ")"


def main():
    args = ARGS
    if args.case and args.case not in CASES:
        sys.exit(f"unknown case {args.case}; cases: {', '.join(CASES)}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    names = [args.case] if args.case else list(CASES)

    print(f"machine: {MACHINE['cpu']}, {args.threads} thread(s), one-core FMA peak "
          f"{MACHINE['fma_peak_gflops_1core']:.0f} GFLOP/s ({MACHINE['peak_isa']}), two threads "
          f"{MACHINE['fma_peak_gflops_2threads']:.0f}, logical CPUs on CPU 0's core: {MACHINE['cpu0_core_siblings']}")
    print(f"xtgrad: OpenBLAS core {MACHINE['blas_core']} (chosen by {MACHINE['core_chosen_by']}), "
          f"own AVX-512 narrow gemm: {'yes' if MACHINE['narrow_gemm'] else 'no'}")
    torch.zeros(2, 2) @ torch.zeros(2, 2)  # loads torch's BLAS
    print(f"torch {torch.__version__}: OpenBLAS core {torch_blas_core()}, freed memory kept for reuse: "
          f"{'yes' if TORCH_REUSES_FREED_MEMORY else 'no'}")
    print(f"{'case':<20}{'xtgrad ms':>12}{'PyTorch ms':>12}{'ratio':>9}")
    for name in names:
        fn, repeats = CASES[name]
        # xtgrad splits the work over its own threads and calls OpenBLAS single-threaded:
        # an OpenBLAS started with more threads only adds a thread that spins at start-up.
        out = subprocess.run([args.bench, "--case", name, "--threads", str(args.threads), "--repeats", str(repeats)],
                             check=True, capture_output=True, text=True,
                             env=dict(os.environ, OPENBLAS_NUM_THREADS="1")).stdout
        result = json.loads(out.strip().splitlines()[-1])
        ours, theirs = result["ms"], fn(repeats)
        if "parameters" in result:  # a model's case: fn returned (ms, its parameter count)
            theirs, count = theirs
            print(f"  parameters: xtgrad {int(result['parameters'])}, PyTorch {count}")
            if int(result["parameters"]) != count:
                sys.exit(f"{name}: the two models differ in size")
        print(f"{name:<20}{ours:>12.3f}{theirs:>12.3f}{ours / theirs:>9.2f}", flush=True)


if __name__ == "__main__":
    main()
