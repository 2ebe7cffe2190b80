"""DINO (Caron et al. 2021), the parts: projection head, loss with centering and sharpening, the EMA
teacher update, multi-crop sizes, one training step and the k-NN probe. ``pretrain.py`` runs them as
``tunelab pretrain dino``; the self-training rounds (``selftrain.py``) reuse the head, loss and EMA.
The recipe and its measured choices are in pretrain.py's docstring."""


import math

import torch
import torch.nn.functional as F
from torch import nn



# ------------------------------------------------------------------ model parts

class DINOHead(nn.Module):
    """MLP -> L2-normalised bottleneck -> a linear layer with unit-norm rows (DINO's weight-normed
    last layer with its gain fixed at 1): ``out_dim`` prototype scores."""

    def __init__(self, in_dim: int, out_dim: int = 1024, hidden: int = 512, bottleneck: int = 128):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, bottleneck))
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last = nn.Parameter(torch.empty(out_dim, bottleneck))
        nn.init.trunc_normal_(self.last, std=0.02)

    def forward(self, x):
        x = F.normalize(self.mlp(x), dim=-1)
        return F.linear(x, F.normalize(self.last, dim=-1))


class DINOLoss(nn.Module):
    """Cross-entropy between the teacher's centred, sharpened softmax on each global crop and the
    student's softmax on every *other* crop; keeps the running center (momentum 0.9)."""

    def __init__(self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9):
        super().__init__()
        self.student_temp, self.center_momentum = student_temp, center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    def forward(self, student_out: list, teacher_out: list, teacher_temp: float, skip_same: bool = True):
        """``student_out``: one (B, out_dim) tensor per crop, the global crops first;
        ``teacher_out``: one per global crop (no gradient)."""
        targets = [F.softmax((t.detach() - self.center) / teacher_temp, dim=-1) for t in teacher_out]
        logp = [F.log_softmax(s / self.student_temp, dim=-1) for s in student_out]
        total, n = 0.0, 0
        for i, t in enumerate(targets):
            for j, lp in enumerate(logp):
                if skip_same and i == j:
                    continue
                total = total + (-t * lp).sum(-1).mean()
                n += 1
        self.update_center(torch.cat([t.detach() for t in teacher_out]))
        return total / n

    @torch.no_grad()
    def update_center(self, teacher_cat):
        """Running mean of the teacher's outputs; data-parallel: over every rank's rows (the global batch)."""
        from ...train.distributed import all_reduce_mean

        batch_center = all_reduce_mean(teacher_cat.mean(0, keepdim=True))  # equal shares per rank
        self.center.mul_(self.center_momentum).add_(batch_center, alpha=1 - self.center_momentum)


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """teacher = momentum x teacher + (1 - momentum) x student, parameter by parameter."""
    for pt, ps in zip(teacher.parameters(), student.parameters()):
        pt.mul_(momentum).add_(ps.detach(), alpha=1 - momentum)


def cls_features(backbone, pixel_values, interpolate: bool = False):
    """The [CLS] token of the last layer (after the final LayerNorm) of a ViT backbone."""
    out = backbone(pixel_values=pixel_values, interpolate_pos_encoding=interpolate)
    return out.last_hidden_state[:, 0]


def local_crop_size(size: int, patch: int) -> int:
    """DINO's 96 px local crops at 224 px input, as a multiple of the patch size (at least 2 patches)."""
    return patch * max(2, round(size * 96 / 224 / patch))


def cosine(step: int, total: int, start: float, end: float) -> float:
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * min(step, total) / max(1, total)))


def dino_step(student, head, teacher, teacher_head, loss_fn, opt, x, aug, local_crops: int, local_size: int,
              teacher_temp: float, momentum: float, freeze_last: bool = False, clip: float = 3.0) -> float:
    """One DINO update on a batch ``x`` of normalised images: multi-crop, the loss, a gradient step
    of the student (backbone + head), then the teacher's EMA step. Returns the loss."""
    student.train()
    globals_ = torch.cat([aug.global_view(x) for _ in range(2)])
    with torch.no_grad():
        t_out = list(teacher_head(cls_features(teacher, globals_)).chunk(2))
    s_out = list(head(cls_features(student, globals_)).chunk(2))
    if local_crops:
        locals_ = torch.cat([aug.local(x, local_size) for _ in range(local_crops)])
        s_out += list(head(cls_features(student, locals_, interpolate=True)).chunk(local_crops))
    loss = loss_fn(s_out, t_out, teacher_temp)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if freeze_last:  # DINO: the last layer is not updated at the start (stabilises training)
        head.last.grad = None
    params = [p for g in opt.param_groups for p in g["params"]]
    torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], clip)
    opt.step()
    ema_update(teacher, student, momentum)
    ema_update(teacher_head, head, momentum)
    return loss.item()


# ------------------------------------------------------------------ k-NN monitor

@torch.no_grad()
def features(backbone, loader, device) -> tuple:
    backbone.eval()
    feats, labels = [], []
    for batch in loader:
        feats.append(F.normalize(cls_features(backbone, batch["pixel_values"].to(device)), dim=-1).cpu())
        labels.append(batch["labels"])
    return torch.cat(feats).numpy(), torch.cat(labels).numpy()


def knn_accuracy(backbone, bank_loader, query_loader, device, k: int = 20) -> float:
    """Weighted k-NN (cosine distance, 1/distance weights) accuracy of query images against the bank."""
    from sklearn.neighbors import KNeighborsClassifier

    xb, yb = features(backbone, bank_loader, device)
    xq, yq = features(backbone, query_loader, device)
    knn = KNeighborsClassifier(n_neighbors=min(k, len(yb)), metric="cosine", weights="distance")
    knn.fit(xb, yb)
    return float((knn.predict(xq) == yq).mean())
