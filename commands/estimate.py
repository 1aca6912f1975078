"""What a training job will cost before it runs: peak GPU memory per device, tokens, FLOPs and GPU-hours.

Pure arithmetic on the resolved job (no clock, no I/O). The memory model is calibrated against ms-swift's published
benchmark (modelscope/ms-swift `docs/source/LLM/Benchmark.md`: qwen-1.8b/7b/14b-chat, LoRA, bnb-4bit QLoRA and full
fine-tuning, gradient checkpointing on, max_length 512-8192, batch 1-8; tests/commands/test_estimate.py holds the
figures). Against those figures it is within ±15% for LoRA and QLoRA at every length and batch published, and for full
fine-tuning up to max_length 2048; full fine-tuning at longer lengths is overestimated by up to 30% (the safe side).

The model, per device:
  weights      parameters × bytes of the dtype (bnb QLoRA: linear layers at 4 or 8 bits plus their quantisation
               constants; embeddings and the LM head stay unquantised and are upcast to fp32 for k-bit training)
  trainable    LoRA: rank × (in + out) for every adapted linear layer, fp32 weight + grad + two Adam moments = 16 B;
               full: grad (dtype) + two Adam moments (dtype, no fp32 master copy when the weights are bf16) + one
               dtype-sized step temporary = 4 × dtype bytes on top of the weights
  activations  with gradient checkpointing (ms-swift's default): per token, one hidden state per layer (2·h bytes),
               one layer recomputed (34·h bytes, Korthikanti et al. 2022 with flash attention) and the logits with
               their fp32 upcast and gradient (14 bytes × vocabulary); tokens past 2048 in one sequence cost that
               logits term twice (the published figures grow about twice as fast per token there)
  overhead     0.5 GiB (CUDA context and allocator reserve)
  ZeRO         stage 2 shards gradients and optimizer state over the GPUs, stage 3 the weights too.

Compute: FLOPs ≈ 6 · N · tokens (N = all parameters: LoRA still runs the full forward and backward through the
frozen weights; gradient checkpointing's recomputation is inside the MFU), at a stated model FLOPs utilisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

GIB = 1024**3
OVERHEAD_GIB = 0.5
LOGIT_BYTES = 14.0  # per vocabulary entry per token: bf16 logits, their fp32 upcast for the loss, the gradient
RECOMPUTE_BYTES = 34.0  # per hidden unit per token: one transformer layer's activations, recomputed in backward
LONG_SEQUENCE = 2048  # tokens of one sequence beyond which the published figures grow about twice as fast
ACCURACY = 0.15  # stated (and tested) relative accuracy against the published figures, see the module docstring

# Model FLOPs utilisation assumed for GPU-hours: a typical single-node figure for ms-swift with flash attention and
# gradient checkpointing; bnb QLoRA dequantises every linear layer on the fly (the published benchmark trains
# 25-35% slower than bf16 LoRA).
MFU = {"full": 0.35, "lora": 0.35, "qlora": 0.25}

_DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}


@dataclass(frozen=True)
class GpuType:
    name: str
    memory_gib: float
    tflops: float  # dense bf16 (fp16 where the card has no bf16) peak, TFLOP/s


GPUS: dict[str, GpuType] = {g.name: g for g in (
    GpuType("a10", 24, 125), GpuType("l4", 24, 121), GpuType("rtx3090", 24, 71), GpuType("rtx4090", 24, 165),
    GpuType("t4", 16, 65), GpuType("v100-32g", 32, 125), GpuType("l40s", 48, 362), GpuType("a100-40g", 40, 312),
    GpuType("a100-80g", 80, 312), GpuType("a800-80g", 80, 312), GpuType("h20", 96, 148),
    GpuType("h100-80g", 80, 989), GpuType("h800-80g", 80, 989), GpuType("h200", 141, 989),
)}
DEFAULT_GPU = "a100-80g"


@dataclass(frozen=True)
class Arch:
    """What the estimate needs to know of a transformer: sizes, and whether the LM head shares the embedding."""

    hidden: int
    layers: int
    intermediate: int
    vocab: int
    heads: int
    kv_heads: int
    tied: bool = False

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def linear_shapes(self) -> list[tuple[int, int]]:
        """(in, out) of each linear layer in one block: q, k, v, o, gate, up, down."""
        h, kv = self.hidden, self.kv_heads * self.head_dim
        return [(h, h), (h, kv), (h, kv), (h, h), (h, self.intermediate), (h, self.intermediate),
                (self.intermediate, h)]

    def linear_params(self) -> int:
        return self.layers * sum(i * o for i, o in self.linear_shapes())

    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied else 2)

    def params(self) -> int:
        return self.linear_params() + self.embedding_params()

    def lora_params(self, rank: int) -> int:
        """Trainable parameters of LoRA on every linear layer (ms-swift's `all-linear`)."""
        return self.layers * rank * sum(i + o for i, o in self.linear_shapes())


def arch_for_size(size_b: float) -> Arch:
    """A plausible decoder for a model of `size_b` billion parameters when its preset declares no architecture
    (a Qwen/Llama-like shape: 128-dim heads, 8 KV heads, intermediate ≈ 2.7 × hidden, 152k vocabulary)."""
    params = max(size_b, 0.0001) * 1e9
    hidden = max(128, round(4096 * (params / 7.6e9) ** 0.4 / 128) * 128)
    vocab = 151_936
    per_layer = hidden * hidden * (2 + 2 * 1024 / hidden + 3 * 2.7)
    layers = max(1, round((params - 2 * vocab * hidden) / per_layer))
    heads = max(1, hidden // 128)
    return Arch(hidden, layers, int(hidden * 2.7), vocab, heads, min(8, heads))


@dataclass(frozen=True)
class TrainShape:
    """The settings of one training job that decide its cost."""

    tuner: str  # lora | qlora | full
    dtype: str = "bfloat16"
    quant_bits: int = 4
    lora_rank: int = 8
    max_length: int = 2048
    batch: int = 1  # per device
    grad_accum: int = 1
    gpus: int = 1
    zero: int = 0  # DeepSpeed ZeRO stage: 0 (plain DDP), 2 or 3
    max_steps: int | None = None
    epochs: float = 1.0
    rows: int | None = None  # training rows, when known (max_samples × datasets)


@dataclass(frozen=True)
class Memory:
    weights: float
    trainable: float
    activations: float
    overhead: float

    @property
    def total(self) -> float:
        return self.weights + self.trainable + self.activations + self.overhead


@dataclass(frozen=True)
class Estimate:
    params: int
    trainable_params: int
    memory: Memory  # GiB per device
    tokens: int | None  # at most this many tokens processed (sequences are padded-free, so usually fewer)
    steps: int | None
    flops: float | None
    gpu: GpuType
    gpus: int
    mfu: float
    gpu_hours: float | None  # GPU-hours (all devices together)

    @property
    def fits(self) -> bool:
        return self.memory.total <= self.gpu.memory_gib

    @property
    def wall_hours(self) -> float | None:
        return None if self.gpu_hours is None else self.gpu_hours / self.gpus


def memory(arch: Arch, shape: TrainShape) -> Memory:
    """Peak GPU memory per device, GiB (see the module docstring for each term)."""
    dtype = _DTYPE_BYTES.get(shape.dtype, 2)
    n = max(1, shape.gpus)
    linear, embed = arch.linear_params(), arch.embedding_params()
    weights: float
    trainable: float
    if shape.tuner == "qlora":
        bits = 8 if shape.quant_bits == 8 else 4
        # NF4 with double quantisation: 4 bits plus ~0.13 bits of constants per weight; int8: 8 bits plus a scale
        # per row (negligible). Unquantised parts are upcast to fp32 (peft's prepare_model_for_kbit_training).
        weights = linear * (bits / 8 + (0.127 / 8 if bits == 4 else 0.0)) + embed * 4
    else:
        weights = float((linear + embed) * dtype)
    if shape.tuner == "full":
        trainable = float((linear + embed) * dtype * 4)
        if shape.zero >= 2:
            trainable /= n
        if shape.zero >= 3:
            weights /= n
    else:
        trainable = arch.lora_params(shape.lora_rank) * 16.0
        if shape.zero >= 2:
            trainable /= n
        if shape.zero >= 3:
            weights /= n
    per_token = 2 * arch.layers * arch.hidden + RECOMPUTE_BYTES * arch.hidden + LOGIT_BYTES * arch.vocab
    long_tail = max(0, shape.max_length - LONG_SEQUENCE) * LOGIT_BYTES * arch.vocab
    activations = shape.batch * (shape.max_length * per_token + long_tail)
    return Memory(weights / GIB, trainable / GIB, activations / GIB, OVERHEAD_GIB)


def estimate(arch: Arch, shape: TrainShape, gpu: GpuType) -> Estimate:
    """Memory, tokens, FLOPs and GPU-hours of one training job on `shape.gpus` GPUs of type `gpu`."""
    params = arch.params()
    trainable = params if shape.tuner == "full" else arch.lora_params(shape.lora_rank)
    global_batch = shape.batch * shape.grad_accum * max(1, shape.gpus)
    steps: int | None
    if shape.max_steps is not None:
        steps = shape.max_steps
    elif shape.rows is not None:
        steps = max(1, math.ceil(shape.rows * shape.epochs / global_batch))
    else:
        steps = None
    tokens = None if steps is None else steps * global_batch * shape.max_length
    flops = None if tokens is None else 6.0 * params * tokens
    mfu = MFU.get(shape.tuner, 0.35)
    hours = None if flops is None else flops / (gpu.tflops * 1e12 * mfu) / 3600.0
    return Estimate(params=params, trainable_params=trainable, memory=memory(arch, shape), tokens=tokens,
                    steps=steps, flops=flops, gpu=gpu, gpus=max(1, shape.gpus), mfu=mfu, gpu_hours=hours)


def gpu_type(name: str | None) -> GpuType:
    """The GPU type a policy names (case and `-`/`_` insensitive); the default when None."""
    key = (name or DEFAULT_GPU).lower().replace("_", "-")
    return GPUS.get(key) or GPUS[DEFAULT_GPU]
