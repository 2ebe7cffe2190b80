"""Batched image augmentations on the model's normalised ``pixel_values`` (B, C, H, W), in torch.

Why not torchvision: no torchvision wheel matches the CPU build of torch installed here, and the
few operations DINO / FixMatch-style training needs are short tensor code that runs on a whole
batch at once (one ``affine_grid`` + ``grid_sample`` per batch instead of a PIL call per image):

- ``resized_crop``: random crop of a share of the area (``scale``) and an aspect ratio (``ratio``),
  resized to ``out`` pixels, with a random horizontal flip: torchvision's RandomResizedCrop +
  RandomHorizontalFlip as one affine resampling (bilinear);
- ``jitter``: brightness and contrast factors in [1 - s, 1 + s] (computed on un-normalised [0, 1]
  values, clamped, normalised again);
- ``blur``: Gaussian blur with a per-image sigma (grouped convolution);
- ``solarize``: values above 0.5 (un-normalised) inverted;
- ``erase``: one random rectangle (2-33 % of the area) set to the mean (cutout / RandomErasing).

``Augmenter.weak`` (mild crop + flip), ``strong`` (all of the above), ``global_view`` and ``local``
(DINO's large and small crops) combine them. Sizes follow the input: a 28 x 28 image gets 3 x 3 blur kernels.
"""

import math

import torch
import torch.nn.functional as F


def _uniform(n: int, lo: float, hi: float, like: torch.Tensor) -> torch.Tensor:
    return torch.empty(n, device=like.device).uniform_(lo, hi)


def resized_crop(x: torch.Tensor, out: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), flip: bool = True) -> torch.Tensor:
    """Random crops of ``scale`` x the area with aspect ``ratio``, resized to ``out`` x ``out``."""
    b = x.shape[0]
    area = _uniform(b, *scale, x)
    logr = _uniform(b, math.log(ratio[0]), math.log(ratio[1]), x)
    r = torch.exp(logr)
    w = torch.sqrt(area * r).clamp(max=1.0)  # share of the width / height
    h = torch.sqrt(area / r).clamp(max=1.0)
    cx = (torch.rand(b, device=x.device) * 2 - 1) * (1 - w)
    cy = (torch.rand(b, device=x.device) * 2 - 1) * (1 - h)
    sx = w * (torch.where(torch.rand(b, device=x.device) < 0.5, -1.0, 1.0) if flip else 1.0)
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, cx, h, cy
    grid = F.affine_grid(theta, (b, x.shape[1], out, out), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class Augmenter:
    """Augmentations for inputs normalised with ``mean`` / ``std`` (per channel) at ``size`` pixels."""

    def __init__(self, mean, std, size: int):
        mean = [mean] if isinstance(mean, (int, float)) else list(mean)
        std = [std] if isinstance(std, (int, float)) else list(std)
        self.mean = torch.tensor(mean).view(1, -1, 1, 1)
        self.std = torch.tensor(std).view(1, -1, 1, 1)
        self.size = size
        self.sigma_max = max(1.0, 2.0 * size / 224)  # DINO: sigma in [0.1, 2] px at 224 px
        self.kernel = 2 * math.ceil(2 * self.sigma_max) + 1 if size >= 64 else 3

    # ---------------------------------------------------------------- photometric ops ([0, 1] space)
    def _unnorm(self, x):
        return x * self.std.to(x) + self.mean.to(x)

    def _norm(self, x):
        return (x - self.mean.to(x)) / self.std.to(x)

    @staticmethod
    def _pick(x: torch.Tensor, p: float) -> torch.Tensor:
        return (torch.rand(x.shape[0], 1, 1, 1, device=x.device) < p).to(x)

    def jitter(self, x, strength: float = 0.4, p: float = 0.8):
        """Brightness and contrast jitter; ``x`` normalised in and out."""
        u = self._unnorm(x)
        b = x.shape[0]
        bright = _uniform(b, 1 - strength, 1 + strength, x).view(b, 1, 1, 1)
        contrast = _uniform(b, 1 - strength, 1 + strength, x).view(b, 1, 1, 1)
        mean = u.mean(dim=(1, 2, 3), keepdim=True)
        v = ((u * bright - mean) * contrast + mean).clamp(0, 1)
        m = self._pick(x, p)
        return self._norm(m * v + (1 - m) * u)

    def blur(self, x, p: float = 0.5):
        b, c, h, w = x.shape
        sigma = _uniform(b, 0.1, self.sigma_max, x)
        k = self.kernel
        t = torch.arange(k, device=x.device, dtype=x.dtype) - k // 2
        g = torch.exp(-(t.view(1, -1) ** 2) / (2 * sigma.view(-1, 1) ** 2))
        g = g / g.sum(1, keepdim=True)  # (b, k)
        kern = (g[:, :, None] * g[:, None, :]).repeat_interleave(c, 0).unsqueeze(1)  # (b*c, 1, k, k)
        y = F.conv2d(F.pad(x.reshape(1, b * c, h, w), [k // 2] * 4, mode="replicate"), kern, groups=b * c)
        m = self._pick(x, p)
        return m * y.view(b, c, h, w) + (1 - m) * x

    def solarize(self, x, p: float = 0.2):
        u = self._unnorm(x)
        m = self._pick(x, p)
        return self._norm(m * torch.where(u > 0.5, 1 - u, u) + (1 - m) * u)

    def erase(self, x, p: float = 0.5):
        """One rectangle of 2-33 % of the area per picked image set to 0 (the normalised mean)."""
        b, _, h, w = x.shape
        area = _uniform(b, 0.02, 0.33, x)
        r = torch.exp(_uniform(b, math.log(0.3), math.log(3.3), x))
        eh = (torch.sqrt(area * r) * h).clamp(1, h)
        ew = (torch.sqrt(area / r) * w).clamp(1, w)
        y0 = torch.rand(b, device=x.device) * (h - eh)
        x0 = torch.rand(b, device=x.device) * (w - ew)
        rows = torch.arange(h, device=x.device).view(1, h, 1)
        cols = torch.arange(w, device=x.device).view(1, 1, w)
        box = ((rows >= y0.view(b, 1, 1)) & (rows < (y0 + eh).view(b, 1, 1))
               & (cols >= x0.view(b, 1, 1)) & (cols < (x0 + ew).view(b, 1, 1))).unsqueeze(1).to(x)
        m = self._pick(x, p)
        return x * (1 - m * box)

    # ---------------------------------------------------------------- recipes
    def weak(self, x):
        """Mild: a crop of 70-100 % of the area + flip (FixMatch's "weak": flip and shift)."""
        return resized_crop(x, self.size, scale=(0.7, 1.0), ratio=(0.9, 1.1))

    def strong(self, x, scale=(0.3, 1.0)):
        """DINO's global-view recipe adapted to small images + erasing (FixMatch's "strong")."""
        x = resized_crop(x, self.size, scale=scale)
        return self.erase(self.solarize(self.blur(self.jitter(x))))

    def global_view(self, x, scale=(0.4, 1.0)):
        """A DINO global view: crop + flip, jitter, blur, solarize (no erasing)."""
        return self.solarize(self.blur(self.jitter(resized_crop(x, self.size, scale=scale))))

    def local(self, x, out: int, scale=(0.1, 0.4)):
        """A DINO local view: a small crop at ``out`` pixels, jittered and blurred."""
        return self.blur(self.jitter(resized_crop(x, out, scale=scale)))

    def apply(self, kind: str, x):
        if kind == "none":
            return x
        return self.weak(x) if kind == "weak" else self.strong(x)
