"""The Cross-Feature Interaction Network (Peng, Zhou, Mok, Pattern Recognition Letters 2025).

One definition serves training, ONNX/TensorRT export and the node.

Input ``(B, 17, 2)``: 2D joints in H36M-17 order, screen-normalised
(:func:`cfi_pose_ros.camera.normalize_screen`). Output ``(B, 17, 3)``:
root-relative 3D joints in metres in the camera frame (x right, y down,
z forward).

Per block (stacked ``depth`` = L_d times), with X_I the block's input:

* X_L = GCN(X_I)                                  eq. (1), (3)
* X_G = MHSA(X_I)                                 eq. (2), (4)
* X'_G = MHCA(q=X_I, k=X_L, v=X_G) + X_G          eq. (5), (6)
  X'_I = MHCA(q=X_L, k=X_G, v=X_I) + X_I          (the same rule, rotated:
  X'_L = MHCA(q=X_G, k=X_I, v=X_L) + X_L           each feature is query once)
* X_CFI = X'_G + X'_L + X'_I                      eq. (7)
* X_out = X_CFI + MLP(X_CFI) + GCN(X_CFI)         eq. (8), GraMLP

then a linear regression head (sec. 3.4).

Choices where the paper is silent or loose, following the strongest single-frame
lifters (GraFormer, MHFormer, PoseFormer, MotionBERT's DSTformer):

* **X_I of later blocks**: the block's input (the previous block's output), not
  the first embedding again. "Stacked for 3 loops" says no more; the paper's
  reading of X_I as a residual that makes up for what propagation loses would also
  fit feeding the embedding to every loop.
* **Query and key of X'_I and X'_L**: eq. (5), (6) fix only X'_G's roles (query
  X_I, key X_L, value and residual X_G); "similarly" leaves open which of the
  other two features queries X'_I and X'_L. The value and residual are the
  feature itself (as in eq. 6, and as Table 4 names the branches); the query and
  key are the cyclic rotation above, a choice.
* **Output projections**: every attention, the cross-attentions included, ends in
  a linear layer over the concatenated heads, as eq. (2)'s text says of MHSA;
  eq. (6) writes the bare concatenation.
* **GraMLP's GCN**: a GCN of its own (eq. 8's "GCN refers to eq. (3)": the same
  form), not the local branch's weights.

* **Normalisation**: pre-LayerNorm on every branch input (q, k and v of each
  cross-attention get their own norm, since the three features have different
  statistics), and a final LayerNorm before the head. Pre-norm trains stably
  without warm-up at the paper's lr 1e-3.
* **Positional embedding**: a learned per-joint embedding added to X_I after
  the linear embedding; attention is permutation-equivariant and would not
  otherwise know which joint a token is.
* **GCN variant**: the symmetrically normalised adjacency ``D^-1/2 (A + I) D^-1/2``
  of Kipf & Welling, GELU as sigma, and a bias. Eq. (1) and (3) write the plain
  ``A~ = A + I``; its normalisation is what the GCN the paper cites ([33], Kipf &
  Welling) does. Without it each joint's sum is scaled by its degree (2 to 5 on this
  skeleton), and where a GCN's output is not normalised again (X'_L's residual,
  GraMLP's GCN term) the pelvis or the thorax would carry up to 2.5x the scale of a
  wrist. The bias is the linear layer's, so it is mixed with the features:
  ``sigma(A_hat (X W + b))``, each joint's bias scaled by its row sum of A_hat (0.88
  to 1.23), where Kipf & Welling add it after the mixing (eq. 1, 3 have none); the
  shipped weights are trained so. The adjacency is a buffer, so export has no graph
  operators.
* **MLP**: two linear layers, hidden width ``mlp_ratio * D`` = 2D, GELU
  (MHFormer/PoseFormer's spatial MLP ratio).
* **Heads**: d_m = D / H per head (the standard split of Vaswani et al. [32], so cost
  does not grow with H). The MHSA paragraph before eq. (2) gives each head's W^Q, W^K, W^V as D x D,
  which read literally is H times the attention's width and parameters; its
  scaling by sqrt(d_m), a per-head width named apart from D, fits the split.
* **Dropout**: 0 by default (the paper trains 20 epochs on 1.5M frames; flip and
  noise augmentation regularise instead); configurable.
* **Ablation switches** (Table 4): with every CFI branch off the block reduces
  to the "vanilla transformer" baseline ``X + MHSA(X)`` then ``+ MLP``; with
  GraMLP off the feed-forward part is the plain residual MLP.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
from torch import nn

from .skeleton import H36M_17, JointLayout


@dataclass(frozen=True)
class CFIConfig:
    num_joints: int = 17
    in_channels: int = 2
    out_channels: int = 3
    dim: int = 512          # D
    depth: int = 3          # L_d
    heads: int = 8          # H
    mlp_ratio: float = 2.0
    dropout: float = 0.0
    use_cfi_initial: bool = True   # the X'_I term of eq. (7)
    use_cfi_local: bool = True     # the X'_L term
    use_cfi_global: bool = True    # the X'_G term
    use_gramlp: bool = True        # eq. (8); off = plain residual MLP

    def __post_init__(self):
        for name in ("num_joints", "dim", "depth", "heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by heads ({self.heads})")

    @property
    def uses_cfi(self) -> bool:
        return self.use_cfi_initial or self.use_cfi_local or self.use_cfi_global

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "CFIConfig":
        """The config of a JSON object of its fields (any left out keep their defaults); ValueError
        naming the field for an unknown key or a value of another type (``"dim": "128"`` got as
        far as ``__post_init__``'s ``"128" < 1``: "'<' not supported ...", naming nothing)."""
        if not isinstance(data, dict):
            raise ValueError(f"the model config must be an object of its fields, not {data!r}")
        known = {f.name: f for f in fields(cls)}
        unknown = set(data) - set(known)
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown, key=str)}")
        for name, value in data.items():
            kind = known[name].type if isinstance(known[name].type, str) else known[name].type.__name__
            if kind == "int":
                ok = type(value) is int
            elif kind == "float":    # an int where a float is meant, as JSON writes 2.0, if exact
                ok = (type(value) is float and math.isfinite(value)) or (type(value) is int and abs(value) <= 2**53)
            else:
                ok = type(value) is bool
            if not ok:
                raise ValueError(f"{name} must be {'an' if kind == 'int' else 'a'} {kind}, not {value!r}")
        return cls(**data)


def normalized_adjacency(layout: JointLayout) -> np.ndarray:
    """``D^-1/2 (A + I) D^-1/2`` of the layout's bones."""
    adj = layout.adjacency(self_loops=True)
    inv_sqrt_degree = 1.0 / np.sqrt(adj.sum(axis=1))
    return (adj * inv_sqrt_degree[:, None] * inv_sqrt_degree[None, :]).astype(np.float32)


class GraphConv(nn.Module):
    """sigma(A_hat (X W + b)): one GCN layer over the skeleton (eq. 1, 3; see the module
    docstring for the normalised A_hat and where the bias is)."""

    def __init__(self, dim: int, adjacency: torch.Tensor):
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        self.register_buffer("adjacency", adjacency, persistent=False)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(torch.matmul(self.adjacency, self.linear(x)))


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate query, key and value inputs (eq. 2, 5).

    Self-attention is the case ``query is key is value``; it then uses one fused
    projection. By default written with plain matmul/softmax so that ONNX export
    and TensorRT see a fixed, data-independent graph; training switches to
    ``scaled_dot_product_attention`` (:func:`use_fused_attention`), which computes
    the same function with fewer layout copies on the CPU.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, fused_qkv: bool = False):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim ** -0.5
        self.fused_qkv = fused_qkv
        if fused_qkv:
            self.qkv = nn.Linear(dim, 3 * dim)
        else:
            self.q = nn.Linear(dim, dim)
            self.k = nn.Linear(dim, dim)
            self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = nn.Dropout(dropout)
        self.fused_attention = False

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        return x.reshape(batch, tokens, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, query: torch.Tensor, key: torch.Tensor | None = None,
                value: torch.Tensor | None = None) -> torch.Tensor:
        if self.fused_qkv:
            q, k, v = self.qkv(query).chunk(3, dim=-1)
        else:
            q, k, v = self.q(query), self.k(key), self.v(value)
        q, k, v = self._split(q), self._split(k), self._split(v)
        if self.fused_attention:
            drop = self.attn_drop.p if self.training else 0.0
            out = nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=drop, scale=self.scale)
        else:
            attn = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * self.scale, dim=-1)
            out = torch.matmul(self.attn_drop(attn), v)
        batch, _, tokens, _ = out.shape
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, -1))


def use_fused_attention(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Switch every attention of ``model`` to ``scaled_dot_product_attention`` (or back).

    The parameters and the function are unchanged, so weights trained either way
    load into the other; export always runs the plain graph.
    """
    for module in model.modules():
        if isinstance(module, MultiHeadAttention):
            module.fused_attention = enabled
    return model


class CrossFeatureInteraction(nn.Module):
    """One CFI module: ``MHCA(q, k, v) + v`` (eq. 5, 6), with pre-norm on each input."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_k = nn.LayerNorm(dim)
        self.norm_v = nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, heads, dropout)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        return self.attn(self.norm_q(query), self.norm_k(key), self.norm_v(value)) + value


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CFIBlock(nn.Module):
    """One loop of Fig. 2: local/global extraction, CFI modules, GraMLP."""

    def __init__(self, config: CFIConfig, adjacency: torch.Tensor):
        super().__init__()
        dim, heads, drop = config.dim, config.heads, config.dropout
        self.config = config
        self.norm_in = nn.LayerNorm(dim)
        self.global_attn = MultiHeadAttention(dim, heads, drop, fused_qkv=True)
        if config.uses_cfi:
            self.local_gcn = GraphConv(dim, adjacency)
        # Only the enabled CFI modules own parameters, so an ablated model's
        # weights file says exactly what it contains.
        self.cfi_global = CrossFeatureInteraction(dim, heads, drop) if config.use_cfi_global else None
        self.cfi_initial = CrossFeatureInteraction(dim, heads, drop) if config.use_cfi_initial else None
        self.cfi_local = CrossFeatureInteraction(dim, heads, drop) if config.use_cfi_local else None
        self.norm_ff = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * config.mlp_ratio), drop)
        self.ff_gcn = GraphConv(dim, adjacency) if config.use_gramlp else None

    def forward(self, x_initial: torch.Tensor) -> torch.Tensor:
        normed = self.norm_in(x_initial)
        x_global = self.global_attn(normed)                      # eq. (4)
        if not self.config.uses_cfi:
            x = x_initial + x_global                             # vanilla transformer
        else:
            x_local = self.local_gcn(normed)                     # eq. (3)
            x = None
            # eq. (5)-(7): each CFI output is named after its value feature
            for module, q, k, v in ((self.cfi_global, x_initial, x_local, x_global),
                                    (self.cfi_initial, x_local, x_global, x_initial),
                                    (self.cfi_local, x_global, x_initial, x_local)):
                if module is not None:
                    enhanced = module(q, k, v)
                    x = enhanced if x is None else x + enhanced
        normed = self.norm_ff(x)
        out = x + self.mlp(normed)                               # eq. (8)
        if self.ff_gcn is not None:
            out = out + self.ff_gcn(normed)
        return out


class CFINet(nn.Module):
    def __init__(self, config: CFIConfig = CFIConfig(), layout: JointLayout = H36M_17):
        super().__init__()
        if layout.num_joints != config.num_joints:
            raise ValueError(f"layout {layout.name} has {layout.num_joints} joints, "
                             f"config says {config.num_joints}")
        self.config = config
        adjacency = torch.from_numpy(normalized_adjacency(layout))
        self.embed = nn.Linear(config.in_channels, config.dim)
        self.joint_embed = nn.Parameter(torch.zeros(1, config.num_joints, config.dim))
        nn.init.trunc_normal_(self.joint_embed, std=0.02)
        self.blocks = nn.ModuleList(CFIBlock(config, adjacency) for _ in range(config.depth))
        self.norm_out = nn.LayerNorm(config.dim)
        self.head = nn.Linear(config.dim, config.out_channels)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)

    def forward(self, keypoints_2d: torch.Tensor) -> torch.Tensor:
        x = self.embed(keypoints_2d) + self.joint_embed          # X_I
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm_out(x))

    def flops_per_pose(self) -> int:
        """Multiply-add count x2 of one forward pass (matmuls only), for the benchmark."""
        c, n = self.config, self.config.num_joints
        d, h = c.dim, int(c.dim * c.mlp_ratio)
        per_block = 4 * d * d * n + 2 * n * n * d                # MHSA projections + attention
        n_cfi = int(c.use_cfi_initial) + int(c.use_cfi_local) + int(c.use_cfi_global)
        per_block += n_cfi * (4 * d * d * n + 2 * n * n * d)
        per_block += (int(c.uses_cfi) + int(c.use_gramlp)) * (d * d * n + n * n * d)
        per_block += 2 * d * h * n
        macs = c.in_channels * d * n + c.depth * per_block + d * c.out_channels * n
        return 2 * macs
