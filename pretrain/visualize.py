"""Pictures for a person to look at: what MixPro does (the paper's Fig. 1, 4 and 6: originals, MaskMix
mixtures with their cell borders, CutMix mixtures, and the last block's class attention on the MaskMix
images), and the augmented samples of both data pipelines side by side."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from timm.utils import random_seed  # noqa: E402
from torchvision import transforms  # noqa: E402

from mixpro import BatchMixer, ClsAttention, attention_site  # noqa: E402

from .data.gpu.augment import DeviceAugment  # noqa: E402
from .data.gpu.plan import plan_from_transform  # noqa: E402
from .errors import ConfigError, InputNotFoundError, UserError  # noqa: E402

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def load_images(folder: Path, size: int = 224, limit: int = 6) -> torch.Tensor:
    if not Path(folder).is_dir():
        raise InputNotFoundError(f"image folder {folder} does not exist")
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if len(paths) < 2:
        raise UserError(f"{folder} needs at least two images ({', '.join(sorted(IMAGE_SUFFIXES))}) to mix, "
                        f"found {len(paths)}")
    prepare = transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor()])
    return torch.stack([prepare(Image.open(path).convert("RGB")) for path in paths])


def mixing_figure(images: torch.Tensor, model: torch.nn.Module, mean: torch.Tensor, std: torch.Tensor,
                  out: Path, mask_patch_size: int = 64, seed: int = 0, title: str = "") -> Path:
    """Rows: originals, MaskMix (cell borders), CutMix (box), class attention on the MaskMix images."""
    size = images.shape[-1]
    try:
        site = attention_site(model)
        mixer = BatchMixer(1000, patch_size=site.patch_size, mask_patch_size=mask_patch_size, maskmix_prob=1.0,
                           partner="flip", seed=seed, generator=torch.Generator().manual_seed(seed))
        mixer.check_image_size((size, size))
    except (TypeError, ValueError) as error:  # no class-attention adapter, or cells that do not fit the images
        raise ConfigError(f"{error} (--mask-patch-size {mask_patch_size}, {size}-px images)") from None
    labels = torch.zeros(images.shape[0], dtype=torch.long)
    maskmix = mixer(images, labels, kind="maskmix")
    cutmix = mixer(images, labels, kind="cutmix")
    with ClsAttention(model, detach=True) as probe, torch.no_grad():
        model.eval()((maskmix.images - mean) / std)
        attn = probe.pop()
    heat = attn.view(-1, 1, *site.grid_size)
    heat = F.interpolate(heat / heat.amax(dim=(2, 3), keepdim=True), size=(size, size), mode="nearest")[:, 0]

    columns = images.shape[0]
    figure, axes = plt.subplots(4, columns, figsize=(2 * columns, 8), dpi=100)
    rows = ("original", f"MaskMix ({mask_patch_size} px cells)", "CutMix", "class attention (MaskMix)")
    for column in range(columns):
        axes[0, column].imshow(images[column].permute(1, 2, 0))
        axes[1, column].imshow(maskmix.images[column].permute(1, 2, 0).clamp(0, 1))
        for line in range(mask_patch_size, size, mask_patch_size):
            axes[1, column].axhline(line - 0.5, color="white", linewidth=0.6)
            axes[1, column].axvline(line - 0.5, color="white", linewidth=0.6)
        axes[1, column].set_xlabel(f"lam_area {maskmix.lam_area[column]:.2f}, lam_attn "
                                   f"{(attn[column] * maskmix.token_mask[column]).sum() / attn[column].sum():.2f}",
                                   fontsize=6)
        axes[2, column].imshow(cutmix.images[column].permute(1, 2, 0).clamp(0, 1))
        axes[3, column].imshow(maskmix.images[column].permute(1, 2, 0).clamp(0, 1))
        axes[3, column].imshow(heat[column], cmap="jet", alpha=0.5)
    for row, name in enumerate(rows):
        axes[row, 0].set_ylabel(name, fontsize=7)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(title, fontsize=8)
    figure.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    plt.close(figure)
    return out


def describe_model(checkpoint: Optional[str], model_name: str) -> str:
    if checkpoint:
        return f"attention of {Path(checkpoint.partition('=')[2] or checkpoint).name}"
    return f"attention of a RANDOM-WEIGHT {model_name} (no --checkpoint given): the heat maps show no learned saliency"


def _tile(tensor: torch.Tensor, mean, std) -> Image.Image:
    pixels = tensor.cpu() * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)
    return Image.fromarray((pixels.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())


def augment_grid(paths: Sequence[Path], cpu_transform: Callable, size: int, samples: int, device: torch.device,
                 seed: int = 0, same_seed: bool = False) -> Image.Image:
    """One row per photo: ``samples`` draws of the CPU path (``cpu_transform``, timm's in the loader
    workers) on the left, ``samples`` draws of the GPU path (the same recipe's device plan) on the right.
    With ``same_seed`` column k of both halves shares one seed, hence the same parameters. Both halves
    decode with PIL; the right one's title names the device that augmented it."""
    plan = plan_from_transform(cpu_transform)
    augment = DeviceAugment(plan, device)
    gap, label = 8, 18
    grid = Image.new("RGB", (2 * samples * size + gap, label + len(paths) * size), "white")
    draw = ImageDraw.Draw(grid)
    draw.text((4, 3), "CPU path (timm in the loader workers)", fill="black")
    gpu_title = f"GPU path ({device})" if device.type == "cuda" else f"GPU path's CPU fallback ({device})"
    draw.text((samples * size + gap + 4, 3), gpu_title, fill="black")
    for row, path in enumerate(paths):
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        pixels = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).to(device)
        for column in range(samples):
            random_seed(seed + 1000 * row + column)
            cpu = _tile(cpu_transform(image), plan.mean, plan.std)
            random_seed(seed + 1000 * row + column + (0 if same_seed else 500))
            params = torch.as_tensor(plan.sample(image))[None]
            augmented = augment(pixels.reshape(-1), torch.tensor([[image.height, image.width]]), params)[0]
            top = label + row * size
            grid.paste(cpu, (column * size, top))
            grid.paste(_tile(augmented, plan.mean, plan.std), ((samples + column) * size + gap, top))
    return grid
