"""PyTorch reference of `bench/run.sh train-layer`: one Qwen2 decoder layer of Qwen2-0.5B geometry (hidden 896,
14 query heads, 2 key/value heads, head dim 64, intermediate 4864, RMSNorm eps 1e-6, RoPE theta 1e6, q/k/v bias),
fp32, input [1, seq, 896] random; forward, backward of sum(y * g) for a fixed random g (y.backward(g)), AdamW step
(torch.optim.AdamW, lr 1e-5, weight decay 0, foreach=False: torch 1.13's single-tensor path, the arithmetic of
our AdamW). The layer is written in plain torch as transformers' eager Qwen2 code does it (repeat_kv, materialised
causal softmax attention; torch 1.13 has no scaled_dot_product_attention). Warm-up steps untimed, then --steps
timed ones; the printed times are medians over the timed steps.

Run with Debian's interpreter (torch 1.13; the pyenv python3 on PATH has no torch):
    /usr/bin/python3 bench/reference/torch_train_layer.py [--seq 512] [--threads 2] [--steps 10] [--warmup 3] [--recompute 0|1] [--tuned 1|0]

--tuned 1 (default) re-executes the script with glibc malloc kept from returning memory to the kernel
(MALLOC_MMAP_THRESHOLD_=32 MiB, MALLOC_TRIM_THRESHOLD_ / MALLOC_TOP_PAD_ large: without them every large temporary is
a fresh mmap whose pages fault in at ~10 us per 4 KiB here, which halves torch's speed) and OpenBLAS told the core
type (OPENBLAS_CORETYPE=SkylakeX: Debian's OpenBLAS does not know Zen 5). --tuned 0 runs with the environment as is.
"""
import argparse
import resource
import math
import os
import sys
import statistics
import time

import torch
import torch.nn.functional as F

HIDDEN, HEADS, KV_HEADS, HEAD_DIM, INTER, EPS, THETA = 896, 14, 2, 64, 4864, 1e-6, 1e6


class RMSNorm(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(dim))

    def forward(self, x):
        var = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + EPS))


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


class Layer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.input_layernorm = RMSNorm(HIDDEN)
        self.post_attention_layernorm = RMSNorm(HIDDEN)
        self.q_proj = torch.nn.Linear(HIDDEN, HEADS * HEAD_DIM, bias=True)
        self.k_proj = torch.nn.Linear(HIDDEN, KV_HEADS * HEAD_DIM, bias=True)
        self.v_proj = torch.nn.Linear(HIDDEN, KV_HEADS * HEAD_DIM, bias=True)
        self.o_proj = torch.nn.Linear(HEADS * HEAD_DIM, HIDDEN, bias=False)
        self.gate_proj = torch.nn.Linear(HIDDEN, INTER, bias=False)
        self.up_proj = torch.nn.Linear(HIDDEN, INTER, bias=False)
        self.down_proj = torch.nn.Linear(INTER, HIDDEN, bias=False)

    def attention(self, x, cos, sin, mask):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, HEADS, HEAD_DIM).transpose(1, 2)
        k = self.k_proj(x).view(B, T, KV_HEADS, HEAD_DIM).transpose(1, 2)
        v = self.v_proj(x).view(B, T, KV_HEADS, HEAD_DIM).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = HEADS // KV_HEADS
        k = k[:, :, None].expand(B, KV_HEADS, rep, T, HEAD_DIM).reshape(B, HEADS, T, HEAD_DIM)
        v = v[:, :, None].expand(B, KV_HEADS, rep, T, HEAD_DIM).reshape(B, HEADS, T, HEAD_DIM)
        s = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(HEAD_DIM) + mask
        p = torch.softmax(s, dim=-1, dtype=torch.float32)
        o = torch.matmul(p, v).transpose(1, 2).reshape(B, T, HEADS * HEAD_DIM)
        return self.o_proj(o)

    def mlp(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))

    def block(self, x, cos, sin, mask):
        h = x + self.attention(self.input_layernorm(x), cos, sin, mask)
        return h + self.mlp(self.post_attention_layernorm(h))

    def forward(self, x, cos, sin, mask, recompute=False):
        if recompute:
            from torch.utils.checkpoint import checkpoint
            return checkpoint(self.block, x, cos, sin, mask)
        return self.block(x, cos, sin, mask)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--recompute", type=int, default=0)
    ap.add_argument("--tuned", type=int, default=1)
    a = ap.parse_args()
    if a.tuned and os.environ.get("MALLOC_MMAP_THRESHOLD_") is None:
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(32 << 20), MALLOC_TRIM_THRESHOLD_=str(64 << 30),
                   MALLOC_TOP_PAD_=str(1 << 30), OPENBLAS_CORETYPE="SkylakeX")
        os.execve(sys.executable, [sys.executable] + sys.argv, env)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    layer = Layer()
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if not name.endswith("layernorm.weight"):
                p.normal_(0, 0.02)
    T = a.seq
    inv = 1.0 / (THETA ** (torch.arange(0, HEAD_DIM, 2, dtype=torch.float32) / HEAD_DIM))
    freqs = torch.outer(torch.arange(T, dtype=torch.float32), inv)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    mask = torch.full((T, T), float("-inf")).triu(1)
    x = torch.randn(1, T, HIDDEN)
    x.requires_grad_(True)  # as inside a model: the input gradient is needed by the layers below
    g = torch.randn(1, T, HIDDEN)
    opt = torch.optim.AdamW(layer.parameters(), lr=1e-5, weight_decay=0.0, foreach=False)
    fwd, bwd, optm, tot = [], [], [], []
    for step in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        y = layer(x, cos, sin, mask, recompute=bool(a.recompute))
        t1 = time.perf_counter()
        y.backward(g)
        t2 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        x.grad = None
        t3 = time.perf_counter()
        del y
        if step == a.warmup - 1:
            faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        if step >= a.warmup:
            fwd.append(t1 - t0); bwd.append(t2 - t1); optm.append(t3 - t2); tot.append(t3 - t0)
    ms = statistics.median(tot) * 1e3
    print(f"torch-train-layer seq={T} hidden={HIDDEN} threads={a.threads} tokens_per_s={T / (ms / 1e3):.0f} "
          f"ms_per_step={ms:.1f} fwd_ms={statistics.median(fwd) * 1e3:.1f} bwd_ms={statistics.median(bwd) * 1e3:.1f} "
          f"opt_ms={statistics.median(optm) * 1e3:.1f} "
          f"minor_faults_per_step={(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0) / a.steps:.0f} recompute={a.recompute} tuned={int(os.environ.get('MALLOC_MMAP_THRESHOLD_') is not None)} "
          f"torch={torch.__version__} load={open('/proc/loadavg').read().split()[0]}")


if __name__ == "__main__":
    main()
