"""Image-token decoding by replaying one CUDA graph of a whole decode step.

A decode step of a 1B-7B model on a batch of 16 images is a few hundred small kernels (per layer: norms,
projections, RoPE, cache write, attention, MLP; then the head, the draw, the next embedding), so on a GPU its
time goes to launching them, not to reading the weights. Captured once as a CUDA graph and replayed for image
tokens 1..N-1, the step costs one launch. What a graph needs, and how this step provides it:
- fixed shapes and addresses: the step reads and writes only static buffers (hidden states, a step counter,
  the step keys of all steps, RoPE tables, the padding mask, token outputs) and the sampler's static KV cache
  (the whole buffer, with future slots masked out, instead of the filled prefix the eager loop slices);
- no host synchronisation: the step index lives on the device, and the draw is the fused Triton kernel
  (rollout/fused_sampling.py), which needs no sort and no ``.item()``.

The captured step reads the model's weights at the addresses they had at capture: in-place weight updates
(the rollout worker's weight sync) are seen by later replays; if any parameter (or the KV cache) was re-allocated, the
graph is captured again. Graphs are kept per batch size, sampling parameters and mode, and all are dropped when the
sampler re-allocates its KV cache (:meth:`GraphDecoders.clear`), so no graph keeps an old cache alive.

Capture runs the step for real a few times first (warm-up), and those steps write to the live KV cache and the
buffers. So a decode writes its inputs first and captures after: the warm-up steps are then steps 0, 1, 2 of this
very call, writing only the cache slots (and outputs) that decoding writes again before reading them; then every
input is written again (the warm-up advanced the step counter and the hidden states).

Without CUDA the same sequence runs with the CUDA calls swapped for eager ones (:class:`_EagerCalls`: no side
stream, "capture" keeps the step function, "replay" calls it), so the CPU tests exercise the warm-up and capture
order on the same buffers; there it is slower than the default loop.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from policy.sampling import SamplingParams
from rollout.image_sampler import DecoderWeights, ImageSample, StaticKVCache, decoder_forward, next_tokens

WARMUP_STEPS = 3  # real steps on a side stream before capture (Triton compiles, cuBLAS picks its kernels)


@dataclass(frozen=True)
class _Params:
    """The sampling parameters a graph bakes in as constants."""

    cfg_weight: float
    temperature: float
    top_k: int
    top_p: float

    @classmethod
    def of(cls, params: SamplingParams) -> _Params:
        return cls(float(params.cfg_weight), float(params.temperature), int(params.top_k), float(params.top_p))


class GraphDecoder:
    """Image tokens 0..N-1 of B requests after a prefill, one decode step at a time over static buffers."""

    def __init__(
        self,
        model,
        w: DecoderWeights,
        cache: StaticKVCache,
        b: int,
        n: int,
        params: SamplingParams,
        greedy: bool,
        with_logprobs: bool,
    ):
        self.model, self.w, self.cache = model, w, cache
        self.b, self.n = b, n
        self.params = _Params.of(params)
        self.greedy, self.with_logprobs = greedy, with_logprobs
        k0 = cache.k[0]
        device, dtype = k0.device, k0.dtype
        rows, capacity = 2 * b, cache.capacity
        self.calls = _CudaCalls() if device.type == "cuda" else _EagerCalls()
        self.weight_ptrs = _weight_ptrs(model)
        self.cache_ptrs = _cache_ptrs(cache)
        self.hidden = torch.zeros((rows, model.config.text_config.hidden_size), dtype=dtype, device=device)
        self.step = torch.zeros(1, dtype=torch.long, device=device)
        self.first_slot = torch.zeros(1, dtype=torch.long, device=device)  # cache slot of image token 0's input
        self.keys = torch.zeros((n, b), dtype=torch.int32, device=device)
        self.cos = torch.zeros((rows, 1, n, w.head_dim), dtype=dtype, device=device)
        self.sin = torch.zeros_like(self.cos)
        self.real = torch.zeros((rows, capacity), dtype=torch.bool, device=device)
        self.slots = torch.arange(capacity, device=device)
        self.tokens = torch.zeros((b, n), dtype=torch.long, device=device)
        self.logprobs = torch.zeros((b, n), dtype=torch.float32, device=device) if with_logprobs else None
        self.cond_logprobs = torch.zeros((b, n), dtype=torch.float32, device=device) if with_logprobs else None
        self.graph = None  # a torch.cuda.CUDAGraph, or _EagerGraph without CUDA; made by the first decode

    def still_valid(self, model, cache: StaticKVCache) -> bool:
        """Whether the cache (a view of the sampler's one cache, made anew for every call) and every weight are
        still at the addresses and shapes this decoder's graph was captured with."""
        return _cache_ptrs(cache) == self.cache_ptrs and _weight_ptrs(model) == self.weight_ptrs

    # ------------------------------------------------------------------------------------------- the step

    def _draw(self) -> torch.Tensor:
        """Token ``step`` of every request from the current hidden states, written to the outputs."""
        i = self.step
        nxt, lp, clp = next_tokens(
            self.w,
            self.hidden,
            self.params,
            self.keys.index_select(0, i)[0],
            self.greedy,
            self.with_logprobs,
            fused=True,
        )
        self.tokens.index_copy_(1, i, nxt[:, None])
        if self.with_logprobs:
            self.logprobs.index_copy_(1, i, lp[:, None])
            self.cond_logprobs.index_copy_(1, i, clp[:, None])
        return nxt

    def _step(self) -> None:
        """Draw token ``step``, run it through the decoder into the cache, advance: the unit a graph captures."""
        i = self.step
        nxt = self._draw()
        e = self.model.prepare_embeddings_for_image_generation(nxt)  # [B, D]
        slot = self.first_slot + i
        visible = (self.real & (self.slots <= slot))[:, None, None, :]  # [R, 1, 1, S]: real slots up to this one
        h = decoder_forward(
            self.w,
            torch.cat([e, e])[:, None],
            self.cos.index_select(2, i),
            self.sin.index_select(2, i),
            self.cache.k,
            self.cache.v,
            slot,
            visible,
        )
        self.hidden.copy_(h[:, 0])
        self.step.add_(1)

    def _write_inputs(self, hidden, keys, image_cos, image_sin, real, first_slot: int) -> None:
        self.hidden.copy_(hidden)
        self.keys.copy_(keys)
        self.cos.copy_(image_cos)
        self.sin.copy_(image_sin)
        self.real.copy_(real)
        self.first_slot.fill_(first_slot)
        self.step.zero_()

    def _capture(self) -> None:
        """Warm up, then capture one step. Runs on the inputs of a decode: the warm-up steps are its steps
        0..W-1 (W < N, so their step keys, RoPE rows and cache slots exist and are written again by decoding)."""
        with self.calls.side_stream():
            for _ in range(min(WARMUP_STEPS, self.n - 1)):
                self._step()
        self.graph = self.calls.capture(self._step)

    # ------------------------------------------------------------------------------------------- public

    def decode(
        self,
        hidden: torch.Tensor,
        keys: torch.Tensor,
        image_cos: torch.Tensor,
        image_sin: torch.Tensor,
        real: torch.Tensor,
        first_slot: int,
    ) -> ImageSample:
        """All N image tokens from the prefill's last hidden states ``[2B, D]``; ``keys`` ``[N, B]`` the step keys,
        ``image_cos/sin`` ``[2B, 1, N, d]`` the RoPE rows of the image positions, ``real`` ``[2B, S]`` the slots
        holding real (not pad) tokens, ``first_slot`` the prompt length (the cache slot of image token 0)."""
        inputs = (hidden, keys, image_cos, image_sin, real, first_slot)
        self._write_inputs(*inputs)
        if self.graph is None and self.n > 1:
            self._capture()
            self._write_inputs(*inputs)  # the warm-up advanced the step and overwrote the hidden states
        for _ in range(self.n - 1):
            self.graph.replay()
        self._draw()  # the last token feeds nothing
        copy = lambda t: None if t is None else t.to("cpu", copy=True)  # noqa: E731 (buffers are reused)
        return ImageSample(copy(self.tokens), copy(self.logprobs), copy(self.cond_logprobs))


class GraphDecoders:
    """The decoders (and captured graphs) of one ImageSampler, per batch size, sampling parameters and mode."""

    def __init__(self):
        self._decoders: dict[tuple, GraphDecoder] = {}

    def get(
        self,
        model,
        w: DecoderWeights,
        cache: StaticKVCache,
        b: int,
        n: int,
        params: SamplingParams,
        greedy: bool,
        with_logprobs: bool,
    ) -> GraphDecoder:
        """The cached decoder for this call if still valid, else a new one (captured on its first decode)."""
        key = (b, n, _Params.of(params), greedy, with_logprobs)
        d = self._decoders.get(key)
        if d is None or not d.still_valid(model, cache):
            d = self._decoders[key] = GraphDecoder(model, w, cache, b, n, params, greedy, with_logprobs)
        return d

    def clear(self) -> None:
        """Drop every decoder: their graphs and buffers, and their references to the KV cache."""
        self._decoders.clear()


class _CudaCalls:
    """Warm-up on a side stream and capture into a CUDA graph (what torch.cuda.graphs asks for)."""

    @staticmethod
    @contextlib.contextmanager
    def side_stream():
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            yield
        torch.cuda.current_stream().wait_stream(side)

    @staticmethod
    def capture(step) -> torch.cuda.CUDAGraph:
        """Record ``step`` (captured kernels do not run now: the buffers keep their warm-up state)."""
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step()
        return graph


class _EagerGraph:
    """A captured step without CUDA: replay calls the step function."""

    def __init__(self, step):
        self.replay = step


class _EagerCalls:
    """The CUDA calls of :class:`_CudaCalls` swapped for eager ones; capture, like CUDA's, runs nothing."""

    side_stream = staticmethod(contextlib.nullcontext)

    @staticmethod
    def capture(step) -> _EagerGraph:
        return _EagerGraph(step)


def _weight_ptrs(model) -> tuple[int, ...]:
    return tuple(p.data_ptr() for p in model.parameters())


def _cache_ptrs(cache: StaticKVCache) -> tuple[tuple[int, tuple[int, ...]], ...]:
    return tuple((t.data_ptr(), tuple(t.shape)) for t in (*cache.k, *cache.v))
