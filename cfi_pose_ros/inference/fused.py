"""An inference-only rewrite of :class:`~cfi_pose_ros.model.CFINet` with the same outputs and fewer, larger matmuls.

What the rewrite does (exact algebra; only float rounding differs):

* **LayerNorm affine folded into the next linear layer.**
  ``W (gamma * xhat + beta) + b = (W diag(gamma)) xhat + (W beta + b)``, so every
  LayerNorm becomes a plain normalisation ``xhat`` and all layers that read the
  same tensor through *any* LayerNorm share one ``xhat`` and one matmul with their
  weights stacked. Per block that leaves three input GEMMs instead of eleven:
  ``xhat(X_I)`` feeds MHSA's qkv, the local GCN and the three CFI projections
  that read X_I (``D -> 7D``); ``xhat(X_L)`` and ``xhat(X_G)`` feed the other six
  CFI projections (``D -> 3D`` each).
* **The three cross-attentions run as one** multi-head attention with ``3H``
  heads: their queries, keys and values are concatenated along the head axis,
  and their output projections (summed in eq. 7) become one ``3D -> D`` matmul
  with the three biases added once.
* **The attention scale is folded into the query weights**, the embedding bias
  into the joint embedding, and the final LayerNorm into the head.
* **GraMLP's MLP and GCN share one** ``D -> 3D`` input matmul (both read the same
  LayerNorm).
* Reshapes use ``-1`` for the batch, so an exported graph has no shape
  arithmetic and only the batch axis is dynamic.

**Reduced precision** (``compute_dtype`` float16/bfloat16, for the GPU backends):
the weight matmuls and their weights run in the compute dtype; the residual
stream, every LayerNorm (statistics and all), GELU and the whole of attention
(the ``q k^T`` logits, softmax and ``softmax V``) and the skeleton-graph mixing
``A_hat X`` stay float32, and input and output are float32. The casts are
explicit in the graph, so a strongly typed TensorRT build keeps exactly this
split. Attention and graph mixing act on 17 tokens, so keeping them in float32
costs almost nothing, and they were the largest share of the rounding error:
on the shipped weights (2000 realistic people, fp16 on the CPU) keeping them in
float32 took the largest fp16 deviation from 11.6 to 5.4 mm. What remained came from rounding the inputs
of the weight matmuls, which this model amplifies like input noise (see
:data:`~.base.TOLERANCES`), most of it in the first block, which reads the 2D positions
themselves: so the first block runs wholly in float32 (``FLOAT32_BLOCKS``). Measured with
``python benchmarks/gpu_check.py --cpu-spread 2000`` (fp16 on the CPU): on the ``cfi_h36m``
weights the worst of 2000 people fell from 5.3 to 1.6 mm, on ``cfi_h36m_wide`` (trained with
people near, far and to the side) from 12.4 to 1.9 mm and at the start-up check from 14.9 mm,
which failed it, to 1.8 mm; a third of the matmuls' multiply-adds in float32 is the price.

Small batches (one person = 17 tokens) are bound by the number of kernels and
by how well each GEMM uses the cores; fewer, wider GEMMs help ONNX Runtime,
TensorRT and CUDA graphs alike. Folding is done in float64 and stored as
float32. Ablated configurations (any CFI switch off, GraMLP off, the vanilla
transformer) are supported. The plain :class:`CFINet` stays the reference:
every backend is compared against it, never against this module.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..model import CFIBlock, CFINet, CrossFeatureInteraction, MultiHeadAttention


# Precision name -> the dtype of the fused graph's matmuls (inputs and outputs stay float32).
COMPUTE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# Blocks, from the input, that run in float32 whatever the compute dtype (see the module docstring).
FLOAT32_BLOCKS = 1


def _fold(linear: nn.Linear, norm: nn.LayerNorm | None, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(weight, bias)`` in float64 of ``scale * linear(norm(x))`` as a function of ``xhat(x)``."""
    weight = linear.weight.detach().double()
    bias = linear.bias.detach().double()
    if norm is not None:
        gamma = norm.weight.detach().double() if norm.weight is not None else None
        beta = norm.bias.detach().double() if norm.bias is not None else None
        if beta is not None:
            bias = bias + weight @ beta
        if gamma is not None:
            weight = weight * gamma[None, :]
    return weight * scale, bias * scale


def _frozen(tensor: torch.Tensor, dtype: torch.dtype) -> nn.Parameter:
    # copy=True: a float32 tensor would otherwise share storage with the source model
    return nn.Parameter(tensor.detach().to(dtype, copy=True).contiguous(), requires_grad=False)


def _stack(parts: list[tuple[torch.Tensor, torch.Tensor]], dtype: torch.dtype) -> tuple[nn.Parameter, nn.Parameter]:
    """Stack folded ``(out_i, in)`` weights into one matmul: ``x @ weight_t + bias``."""
    weight = torch.cat([w for w, _ in parts], dim=0)
    bias = torch.cat([b for _, b in parts], dim=0)
    return _frozen(weight.t(), dtype), _frozen(bias, dtype)


_SQRT2 = 1.4142135623730951


def portable_gelu(x: torch.Tensor) -> torch.Tensor:
    """Exact (erf) GELU written as ``0.5 * (x * (1 + erf(x / sqrt 2)))``.

    Exported, this is Div/Erf/Add/Mul/Mul (opset-18 operators TensorRT parses
    and fuses), and it is the operand order ONNX Runtime's Gelu fusion
    recognises, so ORT still runs one Gelu kernel. ``F.gelu`` exports at
    opset 18 as an Erf chain ORT 1.32 does *not* fuse, and at opset 20 as the
    ``Gelu`` operator whose TensorRT support is not documented.
    """
    return 0.5 * (x * (1.0 + torch.erf(x / _SQRT2)))


class _Precision(nn.Module):
    """Casts between the float32 residual stream and the matmul compute dtype; the GELU form.

    The dtype test is Python-level, so float32 graphs contain no Cast nodes.
    """

    def __init__(self, compute_dtype: torch.dtype, portable: bool = False):
        super().__init__()
        self.compute_dtype = compute_dtype
        self.portable = portable

    def gelu(self, x: torch.Tensor) -> torch.Tensor:
        return portable_gelu(x) if self.portable else F.gelu(x)

    def low(self, x: torch.Tensor) -> torch.Tensor:
        return x if x.dtype == self.compute_dtype else x.to(self.compute_dtype)

    @staticmethod
    def high(x: torch.Tensor) -> torch.Tensor:
        return x if x.dtype == torch.float32 else x.float()


def _eps(*norms: nn.LayerNorm | None) -> float:
    values = {n.eps for n in norms if n is not None}
    if len(values) > 1:
        raise ValueError(f"LayerNorms that share an input have different eps {sorted(values)}; cannot fuse")
    return values.pop() if values else 1e-5


class _FusedBlock(_Precision):
    def __init__(self, block: CFIBlock, compute_dtype: torch.dtype, portable: bool):
        super().__init__(compute_dtype, portable)
        cd = compute_dtype
        config = block.config
        dim, heads = config.dim, config.heads
        self.dim, self.heads, self.head_dim = dim, heads, dim // heads
        self.tokens = config.num_joints   # a Python int: exported reshapes stay static
        self.uses_cfi = config.uses_cfi
        attn: MultiHeadAttention = block.global_attn
        scale = attn.scale
        adjacency = (block.ff_gcn.adjacency if block.ff_gcn is not None
                     else block.local_gcn.adjacency if config.uses_cfi else torch.zeros(0))
        self.register_buffer("adjacency", adjacency.detach().to(torch.float32, copy=True), persistent=False)

        # The three CFI modules as (module, query source, key source, value source),
        # sources 0 = X_I, 1 = X_L, 2 = X_G; the order is eq. (7)'s.
        cfi: list[tuple[CrossFeatureInteraction, int, int, int]] = [
            (m, q, k, v) for m, q, k, v in ((block.cfi_global, 0, 1, 2), (block.cfi_initial, 1, 2, 0),
                                            (block.cfi_local, 2, 0, 1)) if m is not None]
        self.cfi_values = tuple(v for _, _, _, v in cfi)   # residual of each CFI module
        self.num_cfi = len(cfi)

        # Columns of each source's input GEMM: a list of (kind, module index) in order.
        layout: dict[int, list[tuple[str, int]]] = {0: [], 1: [], 2: []}
        parts: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {0: [], 1: [], 2: []}
        norms: dict[int, list[nn.LayerNorm]] = {0: [block.norm_in], 1: [], 2: []}
        w_qkv, b_qkv = _fold(attn.qkv, block.norm_in)
        q_scale = torch.ones(3 * dim, dtype=torch.float64)
        q_scale[:dim] = scale
        parts[0].append((w_qkv * q_scale[:, None], b_qkv * q_scale))
        layout[0].append(("qkv", -1))
        if config.uses_cfi:
            parts[0].append(_fold(block.local_gcn.linear, block.norm_in))
            layout[0].append(("gcn", -1))
        for index, (module, q_src, k_src, v_src) in enumerate(cfi):
            for kind, src, linear, norm, s in (("q", q_src, module.attn.q, module.norm_q, scale),
                                              ("k", k_src, module.attn.k, module.norm_k, 1.0),
                                              ("v", v_src, module.attn.v, module.norm_v, 1.0)):
                parts[src].append(_fold(linear, norm, s))
                layout[src].append((kind, index))
                norms[src].append(norm)
        self.eps = _eps(*norms[0], *norms[1], *norms[2])
        self.w_in, self.b_in = _stack(parts[0], cd)
        self.has_local = bool(parts[1])
        self.has_global = bool(parts[2])
        if self.has_local:
            self.w_local, self.b_local = _stack(parts[1], cd)
        if self.has_global:
            self.w_global, self.b_global = _stack(parts[2], cd)
        self.layout = {src: tuple(cols) for src, cols in layout.items()}

        self.w_proj = _frozen(attn.proj.weight.t(), cd)
        self.b_proj = _frozen(attn.proj.bias, cd)
        if cfi:
            self.w_cfi_out = _frozen(torch.cat([m.attn.proj.weight for m, *_ in cfi], dim=1).t(), cd)
            self.b_cfi_out = _frozen(sum(m.attn.proj.bias.detach().double() for m, *_ in cfi), cd)

        # GraMLP: LN_ff -> [fc1 | ff_gcn] in one GEMM, then fc2 and the GCN's adjacency.
        fc1, fc2 = block.mlp.net[0], block.mlp.net[3]
        self.hidden = fc1.out_features
        ff_parts = [_fold(fc1, block.norm_ff)]
        if block.ff_gcn is not None:
            ff_parts.append(_fold(block.ff_gcn.linear, block.norm_ff))
        self.use_gramlp = block.ff_gcn is not None
        self.eps_ff = block.norm_ff.eps
        self.w_ff, self.b_ff = _stack(ff_parts, cd)
        self.w_fc2 = _frozen(fc2.weight.t(), cd)
        self.b_fc2 = _frozen(fc2.bias, cd)

    def _heads(self, rows: torch.Tensor, groups: int) -> torch.Tensor:
        """``(B*T, groups*D) -> (B, groups*H, T, d)``."""
        return rows.reshape(-1, self.tokens, groups * self.heads, self.head_dim).transpose(1, 2)

    def _merge_heads(self, x: torch.Tensor, groups: int) -> torch.Tensor:
        """``(B, groups*H, T, d) -> (B*T, groups*D)``."""
        return x.transpose(1, 2).reshape(-1, groups * self.dim)

    def _graph(self, rows: torch.Tensor) -> torch.Tensor:
        """GELU(A_hat X) on ``(B*T, D)`` rows (compute dtype in, float32 out; the mixing in float32)."""
        mixed = torch.matmul(self.adjacency, self.high(rows).reshape(-1, self.tokens, self.dim))
        return self.gelu(mixed).reshape(-1, self.dim)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Softmax attention in float32 (logits, softmax and the weighted sum); compute dtype out."""
        scores = torch.matmul(self.high(q), self.high(k).transpose(-2, -1))
        return self.low(torch.matmul(torch.softmax(scores, dim=-1), self.high(v)))

    def _linear(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """One GEMM with bias; float32 in, compute dtype out."""
        return torch.addmm(bias, self.low(x), weight)

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (self.dim,), eps=self.eps)

    def _split(self, y: torch.Tensor, src: int) -> dict[tuple[str, int], torch.Tensor]:
        widths = {"qkv": 3 * self.dim}
        sizes = [widths.get(kind, self.dim) for kind, _ in self.layout[src]]
        return dict(zip(self.layout[src], torch.split(y, sizes, dim=-1)))

    def forward(self, x_initial: torch.Tensor) -> torch.Tensor:
        """``(B*T, D)`` float32 rows in and out (2D, so every linear layer is one GEMM with its bias)."""
        dim, heads = self.dim, self.heads
        cols = self._split(self._linear(self._norm(x_initial), self.w_in, self.b_in), 0)
        qkv = cols[("qkv", -1)].reshape(-1, self.tokens, 3, heads, self.head_dim).permute(2, 0, 3, 1, 4)
        attended = self._merge_heads(self._attend(qkv[0], qkv[1], qkv[2]), 1)
        x_global = self.high(torch.addmm(self.b_proj, attended, self.w_proj))
        if not self.uses_cfi:
            x = x_initial + x_global
        else:
            x_local = self._graph(cols[("gcn", -1)])
            if self.has_local:
                cols.update(self._split(self._linear(self._norm(x_local), self.w_local, self.b_local), 1))
            if self.has_global:
                cols.update(self._split(self._linear(self._norm(x_global), self.w_global, self.b_global), 2))
            q, k, v = (self._heads(torch.cat([cols[(kind, i)] for i in range(self.num_cfi)], dim=-1)
                                   if self.num_cfi > 1 else cols[(kind, 0)], self.num_cfi)
                       for kind in ("q", "k", "v"))
            attended = self._merge_heads(self._attend(q, k, v), self.num_cfi)
            x = self.high(torch.addmm(self.b_cfi_out, attended, self.w_cfi_out))
            sources = (x_initial, x_local, x_global)
            for src in self.cfi_values:
                x = x + sources[src]
        y = self._linear(F.layer_norm(x, (dim,), eps=self.eps_ff), self.w_ff, self.b_ff)
        hidden = self.gelu(self.high(y[:, :self.hidden]))
        out = x + self.high(self._linear(hidden, self.w_fc2, self.b_fc2))
        if self.use_gramlp:
            out = out + self._graph(y[:, self.hidden:])
        return out


class FusedCFINet(_Precision):
    """Inference-only, numerically equivalent form of a :class:`CFINet` (see module docstring).

    Built from a model in eval mode; dropout is dropped. Parameters are frozen
    copies, so later changes to the source model are not seen. ``compute_dtype``
    is the dtype of the matmuls (float32, float16 or bfloat16) after the first
    ``FLOAT32_BLOCKS`` blocks; inputs and outputs are float32 whatever it is. ``portable_gelu=True`` writes GELU with
    elementary operators (:func:`portable_gelu`), for ONNX export; eager
    PyTorch is faster with ``F.gelu`` (one kernel).
    """

    def __init__(self, model: CFINet, compute_dtype: torch.dtype = torch.float32,
                 portable_gelu: bool = False):
        super().__init__(compute_dtype, portable_gelu)
        if model.training:
            raise ValueError("FusedCFINet needs a model in eval mode (call model.eval())")
        if compute_dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"compute_dtype must be float32, float16 or bfloat16, got {compute_dtype}")
        self.config = model.config
        self.num_joints = model.config.num_joints
        self.w_embed = _frozen(model.embed.weight.t(), torch.float32)
        self.b_embed = _frozen(model.joint_embed.detach() + model.embed.bias.detach(), torch.float32)
        self.blocks = nn.ModuleList(_FusedBlock(block, torch.float32 if index < FLOAT32_BLOCKS else compute_dtype,
                                                portable_gelu) for index, block in enumerate(model.blocks))
        w_head, b_head = _fold(model.head, model.norm_out)
        self.eps_out = model.norm_out.eps
        self.w_head = _frozen(w_head.t(), torch.float32)
        self.b_head = _frozen(b_head, torch.float32)
        self.eval()

    def forward(self, keypoints_2d: torch.Tensor) -> torch.Tensor:
        """``(B, J, 2) -> (B, J, 3)`` float32; inside, activations are ``(B*J, D)`` rows."""
        x = (torch.matmul(keypoints_2d, self.w_embed) + self.b_embed).reshape(-1, self.config.dim)
        for block in self.blocks:
            x = block(x)
        out = torch.addmm(self.b_head, F.layer_norm(x, (self.config.dim,), eps=self.eps_out), self.w_head)
        return out.reshape(-1, self.num_joints, self.config.out_channels)

    def flops_per_pose(self) -> int:
        return CFINet.flops_per_pose(self)  # the same matmuls, regrouped
