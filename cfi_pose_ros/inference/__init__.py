"""ROS-free inference: 2D keypoints ``(N, 17, 2)`` in, 3D joints ``(N, 17, 3)`` out, numpy only.

    from cfi_pose_ros.inference import create_lifter
    lifter = create_lifter("cfi_h36m.safetensors")          # backend="auto"
    joints_3d = lifter.lift(keypoints_2d)                    # (N, 17, 2) float32 -> (N, 17, 3)

Backends (fastest first; ``auto`` takes the first that works here):

============  ======================  =====================================================
tensorrt      fp32, fp16              TensorRT engines, one per fixed batch size, cached
cuda          fp32, fp16, bf16        PyTorch on the GPU, one CUDA graph per batch size
onnxruntime   fp32                    ONNX Runtime CPU on the exported fused graph
torch         fp32                    eager PyTorch on the CPU: the reference
============  ======================  =====================================================

Modules: :mod:`.base` (the :class:`Lifter` interface, errors, tolerances),
:mod:`.batching` (padding/chunking, pure), :mod:`.cache` (cache keys, pure),
:mod:`.fused` (the inference graph), :mod:`.reference` (checks against PyTorch),
:mod:`.onnx_export` (the checked ONNX export), one module per backend, and
:mod:`.factory` (:func:`create_lifter`). The export's command line is
:mod:`cfi_pose_ros.export`; it imports this package, never the reverse.
"""
from .base import (BACKEND_PRECISIONS, BACKENDS, PRECISIONS, TOLERANCES, BackendUnavailable, Lifter,
                   ReferenceMismatch)
from .batching import COMPILED_BATCH_SIZES, CPU_BATCH_SIZES
from .cache import engine_cache_key, engine_key_fields
from .factory import available_backends, backend_unavailable_reason, create_lifter

__all__ = [
    "BACKENDS", "BACKEND_PRECISIONS", "PRECISIONS", "TOLERANCES", "COMPILED_BATCH_SIZES", "CPU_BATCH_SIZES",
    "BackendUnavailable", "ReferenceMismatch", "Lifter", "create_lifter", "available_backends",
    "backend_unavailable_reason", "engine_cache_key", "engine_key_fields",
]
