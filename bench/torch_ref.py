"""PyTorch CPU reference of the FakeSTormer architecture for the benchmark (written for this
project from spec §2, module names = official state-dict names so official weights load).

Usage: .cache/bench-venv/bin/python bench/torch_ref.py [--batch B] [--iters N] [--check FIXTURES]
       tiny small base
Prints one JSON object per preset: forward+loss+backward time per clip, training mode, no
drop-path/dropout (same work as the Rust bench). --check loads the tiny fixture checkpoint and
verifies this model reproduces the official cls/temp_loc/hm outputs (so the comparison is between
the same architecture).
"""
import argparse
import json
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {
    "base": dict(img=224, patch=16, dim=768, depth=12, heads=12, mlp=4, frames=4, sw=192),
    "small": dict(img=224, patch=16, dim=384, depth=12, heads=6, mlp=4, frames=4, sw=96),
    "tiny": dict(img=32, patch=8, dim=64, depth=2, heads=4, mlp=4, frames=4, sw=16),
}


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        q = q * (c // self.heads) ** -0.5
        a = (q @ k.transpose(-2, -1)).softmax(-1)
        return self.proj((a @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, mlp):
        super().__init__()
        ln = lambda: nn.LayerNorm(dim, eps=1e-6)
        self.norm1, self.attn = ln(), Attention(dim, heads)
        self.temporal_norm1, self.temporal_attn = ln(), Attention(dim, heads)
        self.temporal_fc = nn.Linear(dim, dim)
        self.norm2, self.mlp = ln(), Mlp(dim, dim * mlp)

    def forward(self, x, t, n):
        b, _, c = x.shape
        cls, p, tau = x[:, :1], x[:, 1:-1], x[:, -1:]
        pt = p.reshape(b, n, t, c)  # "(n t)" token order
        seq = torch.cat([pt, tau.reshape(b, 1, 1, c).expand(b, n, 1, c)], 2).reshape(b * n, t + 1, c)
        r = self.temporal_fc(self.temporal_attn(self.temporal_norm1(seq))).reshape(b, n, t + 1, c)
        p1 = (pt + r[:, :, :t]).permute(0, 2, 1, 3)  # b t n c
        g = r[:, :, t].mean(1, keepdim=True)
        sseq = torch.cat([cls.reshape(b, 1, 1, c).expand(b, t, 1, c), p1], 2).reshape(b * t, n + 1, c)
        v = self.attn(self.norm1(sseq)).reshape(b, t, n + 1, c)
        s = v[:, :, 0]
        p2 = (p1 + v[:, :, 1:]).permute(0, 2, 1, 3).reshape(b, n * t, c)
        y = torch.cat([cls + s.mean(1, keepdim=True), p2, tau + g], 1)
        return y + self.mlp(self.norm2(y)), s


class PatchEmbed(nn.Module):
    def __init__(self, patch, dim):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, patch)


class Backbone(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, t = cfg["dim"], cfg["frames"]
        n = (cfg["img"] // cfg["patch"]) ** 2
        self.t, self.n = t, n
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.randn(1, n + 1, d) * 0.02)
        self.temp_token = nn.Parameter(torch.zeros(1, 1, d))
        self.time_embed = nn.Parameter(torch.zeros(1, t + 1, d))
        self.patch_embed = PatchEmbed(cfg["patch"], d)
        self.blocks = nn.ModuleList(Block(d, cfg["heads"], cfg["mlp"]) for _ in range(cfg["depth"]))
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.norm_s_cls = nn.LayerNorm(d, eps=1e-6)
        self.norm_t_cls = nn.LayerNorm(d, eps=1e-6)

    def forward(self, x):
        b, _, t, h, w = x.shape
        e = self.patch_embed.proj(x.permute(0, 2, 1, 3, 4).reshape(b * t, 3, h, w)).flatten(2).transpose(1, 2)
        c = e.shape[-1]
        e = e + self.pos_embed[:, 1:]
        e = e.reshape(b, t, self.n, c).permute(0, 2, 1, 3) + self.time_embed[:, :t].unsqueeze(0)  # b n t c
        tau = e[0, :b, 0].unsqueeze(1)  # compat: sample 0, frame 0, patch b
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(b, 1, c)
        x = torch.cat([cls, e.reshape(b, self.n * t, c), tau], 1)
        for blk in self.blocks:
            x, s = blk(x, t, self.n)
        return self.norm(x), self.norm_s_cls(s)


class Conv(nn.Sequential):
    def __init__(self, cin, cout):
        super().__init__(nn.Conv3d(cin, cout, (3, 1, 1), padding=(1, 0, 0)), nn.BatchNorm3d(cout, momentum=0.05), nn.GELU())


class HmHead(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.before_proj = nn.Sequential(Conv(d, d))
        self.proj = nn.Sequential(Conv(d, d // 4), nn.Conv3d(d // 4, 1, (3, 1, 1), padding=(1, 0, 0)))

    def forward(self, f):
        return self.proj(self.before_proj(f))


class Cls(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.fc_out = nn.Linear(d, 1)


class TempLoc(nn.Module):
    def __init__(self, d, sw, t):
        super().__init__()
        self.fc1 = nn.Sequential(nn.Linear(d, sw), nn.GELU(), nn.Dropout(0.0))
        self.fc_out = nn.Linear(t * sw, t)


class Head(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.hm = HmHead(cfg["dim"])
        self.cls = Cls(cfg["dim"])
        self.temp_loc = TempLoc(cfg["dim"], cfg["sw"], cfg["frames"])


class FakeSTormer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.backbone = Backbone(cfg)
        self.keypoint_head = Head(cfg)

    def forward(self, x):
        z, s = self.backbone(x)
        b, _, c = z.shape
        t, g = self.cfg["frames"], self.cfg["img"] // self.cfg["patch"]
        cls = self.keypoint_head.cls.fc_out(z[:, -1])
        tl = self.keypoint_head.temp_loc
        temp_loc = tl.fc_out(tl.fc1(s).reshape(b, -1))
        f = z[:, 1:-1].permute(0, 2, 1).reshape(b, c, t, g, g)  # official scrambled map
        hm = self.keypoint_head.hm(f)
        return cls, temp_loc, hm


def loss_fn(cls, temp_loc, hm, labels, tl_t, hm_t, mask):
    l_hm = 50.0 * F.mse_loss(hm * mask, hm_t * mask)
    l_cls = 0.8 * F.binary_cross_entropy_with_logits(cls / 2, labels)
    l_s = 0.2 * F.binary_cross_entropy_with_logits(temp_loc, tl_t)
    return l_hm + l_cls + l_s


def check(fixtures):
    m = FakeSTormer(PRESETS["tiny"])
    sd = torch.load(os.path.join(fixtures, "tiny_checkpoint.pth"), map_location="cpu", weights_only=True)["state_dict"]
    m.load_state_dict(sd)
    m.eval()
    import struct

    raw = open(os.path.join(fixtures, "tiny_io.safetensors"), "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8 : 8 + n])

    def get(k):
        a, b = hdr[k]["data_offsets"]
        return torch.frombuffer(bytearray(raw[8 + n + a : 8 + n + b]), dtype=torch.float32).reshape(hdr[k]["shape"])

    with torch.no_grad():
        cls, tl, hm = m(get("x_b2"))
    err = max((cls - get("b2.cls")).abs().max(), (tl - get("b2.temp_loc")).abs().max(), (hm - get("b2.hm")).abs().max())
    print(json.dumps({"check": "tiny_io b2", "max_abs_err": float(err)}))
    assert err < 1e-4, err


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--check")
    ap.add_argument("presets", nargs="*", default=["tiny", "small", "base"])
    a = ap.parse_args()
    if a.check:
        check(a.check)
    torch.manual_seed(1)
    for name in (a.presets if a.iters > 0 else []):
        cfg = PRESETS[name]
        m = FakeSTormer(cfg).train()
        b, t, s, g = a.batch, cfg["frames"], cfg["img"], cfg["img"] // cfg["patch"]
        x = torch.rand(b, 3, t, s, s) * 4 - 2
        labels = (torch.arange(b) % 2).float().reshape(b, 1)
        tl_t = labels.expand(b, t).contiguous()
        hm_t = torch.rand(b, 1, t, g, g) * 2 - 1
        mask = torch.ones_like(hm_t)

        def step():
            m.zero_grad(set_to_none=True)
            loss = loss_fn(*m(x), labels, tl_t, hm_t, mask)
            loss.backward()
            return loss.item()

        step()
        times = []
        for _ in range(a.iters):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        times.sort()
        med = times[len(times) // 2]
        print(json.dumps({"impl": "pytorch", "torch": torch.__version__, "preset": name, "batch": b, "iters": a.iters,
                          "threads": torch.get_num_threads(), "fwd_bwd_s_per_iter": round(med, 4),
                          "ms_per_clip": round(1e3 * med / b, 2)}))


if __name__ == "__main__":
    main()
