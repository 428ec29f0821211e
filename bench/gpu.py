"""GPU throughput at the paper scale: images/s of the three training steps, torch.compile off/on.

    python -m bench.gpu [--steps 20] [--no-compile]

Needs a CUDA GPU; without one it says so and exits with status 2 (it never prints made-up
numbers). Steps, as the worker loops run them on a GPU (``explorer.train.common``): bf16 autocast,
fused AdamW (``build_optimizer`` picks ``fused=True`` for CUDA parameters), timm's SDPA attention,
TF32 matmuls and cuDNN benchmark (``setup_worker``), random data already on the device:

- MAE pre-training: ViT-S/16 at 224 px, mask 0.90, decoder 512 x 2 (16 heads), batch 256;
- ViT-S/16 fine-tuning: batch 128, drop path 0.2, layer decay 0.55, BCE over 14 findings;
- DenseNet-121 fine-tuning: batch 128, channels-last model and inputs.

Each is timed for ``--steps`` steps after warm-up (CUDA-synchronised), eager and with
``torch.compile`` (default mode); the table gives images/s and compiled / eager.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from bench._common import machine_line, print_table


def _steps(device: torch.device):
    from explorer.models import create_cnn, create_mae, create_vit_classifier
    from explorer.spec.recipes import resolve_recipe
    from explorer.train.common import autocast, build_optimizer

    vit = resolve_recipe("mae_vit_small_xray", "paper")
    cnn = resolve_recipe("densenet121_baseline", "paper")
    p, f, side = vit.pretrain, vit.finetune, vit.data.image_size

    def mae():
        return create_mae(vit.model.arch, img_size=side, patch_size=vit.model.patch_size,
                          decoder_dim=p.decoder_dim, decoder_depth=p.decoder_depth,
                          decoder_heads=p.decoder_heads, norm_pix_loss=p.norm_pix_loss)

    def vit_cls():
        return create_vit_classifier(vit.model.arch, img_size=side,
                                     patch_size=vit.model.patch_size, num_classes=14,
                                     drop_path=f.drop_path)

    def densenet():
        return create_cnn(cnn.model.arch, num_classes=14).to(memory_format=torch.channels_last)

    cases = [("MAE pre-train ViT-S/16, mask 0.9", mae, p, None, p.batch_size, "mae"),
             ("ViT-S/16 fine-tune", vit_cls, f, f.layer_decay, f.batch_size, "cls"),
             ("DenseNet-121 fine-tune, channels-last", densenet, cnn.finetune, None,
              cnn.finetune.batch_size, "cnn")]

    def build(case, compiled: bool):
        _, make, opt_cfg, layer_decay, batch, kind = case
        model = make().to(device).train()
        opt = build_optimizer(model, opt_cfg, lr=1e-4, layer_decay=layer_decay)
        run = torch.compile(model) if compiled else model
        x = torch.randn(batch, 3, side, side, device=device)
        if kind == "cnn":
            x = x.contiguous(memory_format=torch.channels_last)
        y = (torch.rand(batch, 14, device=device) < 0.1).float()
        crit = torch.nn.BCEWithLogitsLoss()

        def step() -> None:
            with autocast(device, vit.resources):
                if kind == "mae":
                    loss = run(x, mask_ratio=p.mask_ratio)[0]
                else:
                    loss = crit(run(x).float(), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return step, batch

    return cases, build


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench.gpu: no CUDA GPU is visible to torch on this machine; nothing was measured. "
              "Run it on a GPU machine.", file=sys.stderr)
        return 2

    from explorer.spec.config import Recipe
    from explorer.train.common import setup_worker
    from explorer.train.session import LocalSession

    device = setup_worker(Recipe(name="bench"), LocalSession())
    print(machine_line() + f", GPU {torch.cuda.get_device_name(device)}")
    cases, build = _steps(device)
    rows = []
    for case in cases:
        rates = {}
        for compiled in (False, True) if not args.no_compile else (False,):
            step, batch = build(case, compiled)
            for _ in range(5 if compiled else 3):  # compile + autotune, cuDNN benchmark
                step()
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step()
            torch.cuda.synchronize()
            rates[compiled] = args.steps * batch / (time.perf_counter() - t0)
            del step
            torch.cuda.empty_cache()
        on = rates.get(True)
        rows.append([case[0], case[4], f"{rates[False]:.0f}",
                     f"{on:.0f}" if on else "-", f"{on / rates[False]:.2f}x" if on else "-"])
    print_table(["step (bf16 autocast, fused AdamW, SDPA)", "batch", "eager img/s",
                 "compiled img/s", "compiled / eager"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
