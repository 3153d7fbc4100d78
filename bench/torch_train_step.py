#!/usr/bin/env python3
"""PyTorch eager reference for the FakeSTormer `base` training step (spec §2 network, §6 SAM over
Adam), used by scripts/gpu-check.sh to put the Rust CUDA backend's numbers next to PyTorch's on
the same GPU. Same architecture and step structure as kernels/benches/gpu_check/model_check.rs
(bench/torch_ref.py is the CPU reference of the architecture checked against the fixtures; this
file times the full CUDA training step): two forward/backward passes per step (SAM), drop-path
0.3, head dropout 0.2, BatchNorm3d in training mode, losses BCE (cls, temp_loc) + MSE (hm). Random weights and inputs: throughput only.
The unused `temp_token` and `norm_t_cls` (no gradient in compat mode) are left out: 123,624,774
parameters vs the spec's 123,627,078; forward 106.6 GMACs/clip as spec §2.5.

Prints: math, batch, median step ms, clips/s, MFU (dense peak of the named GPU), peak memory.
"""
import argparse
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

C, HEADS, DEPTH, HID, T, IMG, P = 768, 12, 12, 3072, 4, 224, 16
N = (IMG // P) ** 2


def drop_path(x, rate, training):
    """timm drop_path: one keep/scale draw per row of the first dimension."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask / keep


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(C, 3 * C)
        self.proj = nn.Linear(C, C)

    def forward(self, x):
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, HEADS, C // HEADS).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * (C // HEADS) ** -0.5, qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, C))


class Block(nn.Module):
    def __init__(self, rate):
        super().__init__()
        self.rate = rate
        self.norm1 = nn.LayerNorm(C, eps=1e-6)
        self.attn = Attention()
        self.temporal_norm1 = nn.LayerNorm(C, eps=1e-6)
        self.temporal_attn = Attention()
        self.temporal_fc = nn.Linear(C, C)
        self.norm2 = nn.LayerNorm(C, eps=1e-6)
        self.fc1 = nn.Linear(C, HID)
        self.fc2 = nn.Linear(HID, C)

    def forward(self, x):
        b = x.shape[0]
        cls, patches, tau = x[:, :1], x[:, 1:-1].reshape(b, N, T, C), x[:, -1:]
        # temporal: (b, n) sequences [p_{n,0..T-1}, tau]
        seq = torch.cat([patches, tau.unsqueeze(1).expand(b, N, 1, C)], dim=2).reshape(b * N, T + 1, C)
        u = drop_path(self.temporal_attn(self.temporal_norm1(seq)), self.rate, self.training)
        r = self.temporal_fc(u).reshape(b, N, T + 1, C)
        p1 = patches + r[:, :, :T]
        g = r[:, :, T]
        # spatial: (b, t) sequences [cls, p'_{0..N-1,t}]
        seq = torch.cat([cls.unsqueeze(1).expand(b, T, 1, C), p1.permute(0, 2, 1, 3)], dim=2).reshape(b * T, N + 1, C)
        v = drop_path(self.attn(self.norm1(seq)), self.rate, self.training).reshape(b, T, N + 1, C)
        s = v[:, :, 0]
        p2 = p1 + v[:, :, 1:].permute(0, 2, 1, 3)
        y = torch.cat([cls + s.mean(1, keepdim=True), p2.reshape(b, N * T, C), tau + g.mean(1, keepdim=True)], dim=1)
        y = y + drop_path(self.fc2(F.gelu(self.fc1(self.norm2(y)))), self.rate, self.training)
        return y, s


class FakeSTormer(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, C, P, P)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, C))
        self.pos_embed = nn.Parameter(torch.randn(1, N + 1, C) * 0.02)
        self.time_embed = nn.Parameter(torch.zeros(1, T + 1, C))
        self.blocks = nn.ModuleList(Block(0.3 * i / (DEPTH - 1)) for i in range(DEPTH))
        self.norm = nn.LayerNorm(C, eps=1e-6)
        self.norm_s_cls = nn.LayerNorm(C, eps=1e-6)
        self.cls_head = nn.Linear(C, 1)
        self.tl_fc1 = nn.Linear(C, 192)
        self.tl_out = nn.Linear(C, T)
        hw = C // 4
        self.hm = nn.Sequential(
            nn.Conv3d(C, C, (3, 1, 1), padding=(1, 0, 0)), nn.BatchNorm3d(C, momentum=0.05), nn.GELU(),
            nn.Conv3d(C, hw, (3, 1, 1), padding=(1, 0, 0)), nn.BatchNorm3d(hw, momentum=0.05), nn.GELU(),
            nn.Conv3d(hw, 1, (3, 1, 1), padding=(1, 0, 0)))

    def forward(self, img):
        b = img.shape[0]
        e = self.patch(img.permute(0, 2, 1, 3, 4).reshape(b * T, 3, IMG, IMG)).flatten(2).transpose(1, 2)
        e = e.reshape(b, T, N, C) + self.pos_embed[:, 1:].unsqueeze(1) + self.time_embed[:, :T].unsqueeze(2)
        # compat temp token (spec §2.2.1 item 4): patch b of frame 0 of sample 0
        tau = e[0, 0, :b].unsqueeze(1)
        x = torch.cat([(self.cls_token + self.pos_embed[:, :1]).expand(b, 1, C), e.permute(0, 2, 1, 3).reshape(b, N * T, C), tau], 1)
        s = None
        for blk in self.blocks:
            x, s = blk(x)
        z = self.norm(x)
        cls = self.cls_head(z[:, -1]).squeeze(-1)
        a = F.dropout(F.gelu(self.tl_fc1(self.norm_s_cls(s))), 0.2, self.training)
        temp_loc = self.tl_out(a.reshape(b, T * 192))
        f = z[:, 1:-1].permute(0, 2, 1).reshape(b, C, T, 14, 14)  # the scrambled map of spec §2.2.3
        return cls, temp_loc, self.hm(f)


def forward_macs():
    rows_t, rows_s, L = N * (T + 1), T * (N + 1), 2 + N * T
    block = rows_t * 5 * C * C + N * (T + 1) ** 2 * C * 2 + rows_s * 4 * C * C + T * (N + 1) ** 2 * C * 2 + L * 2 * C * HID
    heads = T * N * 3 * C * C + T * N * 3 * C * (C // 4) + T * N * 3 * (C // 4) + T * C * 192 + C * 4 + C
    return DEPTH * block + T * N * 3 * P * P * C + heads


def peak(name, math_):
    pcie = "PCIe" in name
    if "H100" in name or "H200" in name:
        table = {"f32": 51.2e12 if pcie else 66.9e12, "tf32": 378e12 if pcie else 494.7e12, "bf16": 756e12 if pcie else 989.4e12}
        return table[math_]
    return None


def sam_step(model, opt, img, targets, autocast, rho=0.05):
    cls_t, tl_t, hm_t = targets

    def loss_fn():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            cls, tl, hm = model(img)
        return (F.binary_cross_entropy_with_logits(cls.float(), cls_t) + F.mse_loss(hm.float(), hm_t)
                + F.binary_cross_entropy_with_logits(tl.float(), tl_t))

    loss_fn().backward()
    params = [p for p in model.parameters() if p.grad is not None]
    with torch.no_grad():
        norm = torch.norm(torch.stack([p.grad.norm(2) for p in params]), 2)
        scale = rho / (norm + 1e-12)
        eps = [p.grad * scale for p in params]
        for p, e in zip(params, eps):
            p.add_(e)
    opt.zero_grad(set_to_none=True)
    loss_fn().backward()
    with torch.no_grad():
        for p, e in zip(params, eps):
            p.sub_(e)
    opt.step()
    opt.zero_grad(set_to_none=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="8,32")
    ap.add_argument("--maths", default="f32,tf32,bf16")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    args = ap.parse_args()
    dev = torch.device("cuda")
    name = torch.cuda.get_device_name(0)
    step_flops = 6 * 2 * forward_macs()
    print(f"torch {torch.__version__} on {name}; forward {forward_macs() / 1e9:.1f} GMACs/clip; "
          f"SAM step {step_flops / 1e12:.2f} TFLOP/clip")
    print(f"{'math':<6} {'B':>4} {'step ms':>10} {'clips/s':>10} {'MFU':>8} {'mem GiB':>12}")
    torch.manual_seed(0)
    for math_ in args.maths.split(","):
        torch.backends.cuda.matmul.allow_tf32 = math_ == "tf32"
        torch.backends.cudnn.allow_tf32 = math_ == "tf32"
        for b in [int(v) for v in args.batches.split(",")]:
            model = FakeSTormer().to(dev).train()
            opt = torch.optim.Adam(model.parameters(), lr=5e-5, betas=(0.9, 0.995), weight_decay=1e-4)
            img = torch.randn(b, 3, T, IMG, IMG, device=dev)
            targets = (torch.rand(b, device=dev).round(), torch.rand(b, T, device=dev), torch.rand(b, 1, T, 14, 14, device=dev))
            try:
                for _ in range(args.warmup):
                    sam_step(model, opt, img, targets, math_ == "bf16")
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                times = []
                for _ in range(args.steps):
                    t0 = time.perf_counter()
                    sam_step(model, opt, img, targets, math_ == "bf16")
                    torch.cuda.synchronize()
                    times.append((time.perf_counter() - t0) * 1e3)
                ms = statistics.median(times)
                clips = b / (ms / 1e3)
                pk = peak(name, math_)
                mfu = f"{100 * clips * step_flops / pk:.1f}%" if pk else "n/a"
                mem = torch.cuda.max_memory_allocated() / 2 ** 30
                print(f"{math_:<6} {b:>4} {ms:>10.1f} {clips:>10.2f} {mfu:>8} {mem:>12.1f}", flush=True)
            except torch.cuda.OutOfMemoryError:
                print(f"{math_:<6} {b:>4}  out of memory", flush=True)
            del model, opt, img, targets
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
