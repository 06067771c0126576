# AlphaPose for CVAT: local setup, tests, weights, images and Nuclio deployment. `make help` lists the targets.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

PRESET ?= $(or $(ALPHAPOSE_PRESET),fastpose_res50_coco)
DETECTOR ?= $(or $(ALPHAPOSE_DETECTOR),yolov3-spp)
WEIGHTS_DIR ?= $(or $(ALPHAPOSE_WEIGHTS_DIR),weights)
SERVE_ARGS ?=
# Where `make serve-synthetic` writes random weights: apart from WEIGHTS_DIR, so official files and
# synthetic ones never share a directory.
SYNTHETIC_DIR ?= build/synthetic-weights
# Non-empty: let stage, deploy-local, deploy-kube and base-image take synthetic weights (test deployments).
ALLOW_SYNTHETIC ?=
BENCH_ARGS ?=

DOCKER ?= docker
NUCTL ?= nuctl
TORCH_CUDA ?= cu130
CUDA_IMAGE ?=
BASE_IMAGE ?= cvat.pth.alphapose.base:$(TORCH_CUDA)
# The presets of the function files (`all` bakes every preset's checkpoint: several GB).
BASE_PRESETS ?= fastpose_res50_coco fastpose_res50_halpe26 fastpose_res50_wholebody136
# The detector of the GPU function files (`all`: every detector of the table).
BASE_DETECTORS ?= yolox-x

# The tests that compare numbers with the official code or with a reference path, which CI runs again as
# other CPUs compute: `make test-isa`.
PARITY_TESTS ?= tests/golden/test_golden_*.py tests/alphapose/test_fast_paths.py \
	tests/alphapose/engines/test_precision.py tests/alphapose/engines/test_engines.py tests/alphapose/engines/test_int8.py \
	tests/alphapose/pose/test_transforms.py tests/alphapose/pose/test_nms.py tests/alphapose/pose/test_wholebody_decoding.py \
	tests/alphapose/detection/test_yolox.py tests/alphapose/detection/test_person_detector.py
# An AVX2-only CPU (AMD EPYC Zen 3 and the like) as the libraries see it: PyTorch's kernels, oneDNN, MKL,
# OpenCV's dispatch and its IPP, and NumPy's dispatch capped at AVX2 (the table in tools/isa.py; expanded
# when a recipe runs, after .venv exists).
AVX2_CAPS = $(shell $(PY) -m tools.isa)

FUNCTION_FILE ?= function.yaml
STAGE_DIR ?= build/nuclio
CALIBRATION ?=
NETWORK ?= cvat_cvat
NAMESPACE ?= nuclio
REGISTRY ?=
RUN_REGISTRY ?=
SERVICE_TYPE ?= ClusterIP
NUCTL_ARGS ?=
# GPU files build on the local base image; passing it keeps BASE_IMAGE overrides and the yaml in step.
GPU_ARGS = $(if $(findstring gpu,$(FUNCTION_FILE)),--base-image $(BASE_IMAGE))

# $(call require,TOOL,HINT): stop with a message when TOOL is not on PATH.
require = @command -v $(1) >/dev/null 2>&1 || { echo "error: '$(1)' not found on PATH; $(2)" >&2; exit 1; }
DOCKER_HINT := install Docker (https://docs.docker.com/engine/install/) or set DOCKER=
check_base_image = $(if $(GPU_ARGS),@$(DOCKER) image inspect $(BASE_IMAGE) >/dev/null 2>&1 \
	|| { echo "error: base image $(BASE_IMAGE) not found; run 'make base-image' first" >&2; exit 1; })
# The engine, not only the client: a stopped engine would otherwise surface as a missing base image.
check_engine = @$(DOCKER) info >/dev/null 2>&1 || { echo "error: the Docker engine does not answer \
	('$(DOCKER) info' failed): start it (e.g. sudo systemctl start docker) and run make again" >&2; exit 1; }
# Dockerfile.base mounts files into RUN steps, which needs BuildKit, which the buildx plugin provides.
check_buildx = @$(DOCKER) buildx version >/dev/null 2>&1 || { echo "error: Docker's buildx plugin is \
	missing and Dockerfile.base needs BuildKit: install it (Debian/Ubuntu: apt-get install \
	docker-buildx-plugin; others: https://docs.docker.com/go/buildx/)" >&2; exit 1; }
NUCTL_HINT := install nuctl of the same version as CVAT's Nuclio dashboard (https://github.com/nuclio/nuclio/releases) or set NUCTL=

.DEFAULT_GOAL := help
.PHONY: help setup serve serve-synthetic test test-slow test-isa test-avx2 lint weights yaml base-image stage deploy-local deploy-kube bench bench-tracking clean

help: ## List the targets with one line each
	@awk 'BEGIN { FS = ":.*## " } /^[a-z][a-z0-9-]*:.*## / { printf "  %-16s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

$(STAMP): requirements.txt requirements-weights.txt requirements-cvat.txt requirements-video.txt requirements-eval.txt \
		requirements-onnxruntime.txt requirements-openvino.txt requirements-int8.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
		|| { echo "error: '$(PYTHON)' is missing or older than Python 3.11; run e.g. make PYTHON=python3.11 ..." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r requirements-dev.txt
	@touch $@

setup: $(STAMP) ## Create .venv with the pinned requirements (again only when a requirements file changed)

serve: $(STAMP) weights ## Set up, fetch missing weights, start the local server (python -m tools serve)
	ALPHAPOSE_WEIGHTS_DIR=$(WEIGHTS_DIR) ALPHAPOSE_PRESET=$(PRESET) ALPHAPOSE_DETECTOR=$(DETECTOR) \
		$(PY) -m tools serve $(SERVE_ARGS)

serve-synthetic: $(STAMP) ## Try the server offline: write synthetic random weights to SYNTHETIC_DIR and serve them
	$(PY) -m tools.synthetic_weights $(SYNTHETIC_DIR) --preset $(PRESET) --detector $(DETECTOR)
	ALPHAPOSE_WEIGHTS_DIR=$(SYNTHETIC_DIR) ALPHAPOSE_PRESET=$(PRESET) ALPHAPOSE_DETECTOR=$(DETECTOR) \
		$(PY) -m tools serve $(SERVE_ARGS)

test: $(STAMP) ## Run the test suite except the slow cases (no network, no GPU, no weights needed)
	$(PY) -m pytest -q

test-slow: $(STAMP) ## Run the slow end-to-end and golden cases (pytest -m slow; CI runs them after make test)
	$(PY) -m pytest -q -m slow

test-isa: $(STAMP) ## Run PARITY_TESTS (slow cases too) as an AVX2-only CPU computes, then with PyTorch's plain kernels
	env $(AVX2_CAPS) $(PY) -m pytest -q -m 'slow or not slow' $(PARITY_TESTS)
	ATEN_CPU_CAPABILITY=default $(PY) -m pytest -q -m 'slow or not slow' $(PARITY_TESTS)

test-avx2: $(STAMP) ## Run the whole default suite as an AVX2-only CPU computes (what make test does on one)
	env $(AVX2_CAPS) $(PY) -m pytest -q

lint: $(STAMP) ## ruff, and checks that the function*.yaml files, README.md's settings table and docs/performance.md's figures are up to date
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m tools.function_yaml --check
	$(PY) -m tools.readme --check
	$(PY) -m bench.report --docs docs/performance.md --check

weights: $(STAMP) ## Download (resumable) and verify the files of PRESET and DETECTOR into WEIGHTS_DIR (all: every one)
	$(PY) -m alphapose.weights --preset $(PRESET) --detector $(DETECTOR) --dir $(WEIGHTS_DIR)

yaml: $(STAMP) ## Regenerate the function*.yaml files (COCO, Halpe-26, whole body; CPU and GPU)
	$(PY) -m tools.function_yaml

base-image: ## Build the CUDA base image of the GPU functions (Dockerfile.base -> BASE_IMAGE)
	$(call require,$(DOCKER),$(DOCKER_HINT))
	$(check_engine)
	$(check_buildx)
	DOCKER_BUILDKIT=1 $(DOCKER) build -f Dockerfile.base -t $(BASE_IMAGE) \
		--build-arg TORCH_CUDA=$(TORCH_CUDA) --build-arg WEIGHTS_PRESETS="$(BASE_PRESETS)" \
		--build-arg WEIGHTS_DETECTORS="$(BASE_DETECTORS)" \
		$(if $(ALLOW_SYNTHETIC),--build-arg ALLOW_SYNTHETIC_WEIGHTS=1) \
		$(if $(CUDA_IMAGE),--build-arg CUDA_IMAGE=$(CUDA_IMAGE)) .

# Nuclio copies the whole --path directory into the image and reads no ignore file, so the function is
# deployed from a staging directory holding only what it runs (tools/stage.py): no .venv, tests or tools.
stage: $(STAMP) ## Copy the function's files (and WEIGHTS_DIR's files for a CPU FUNCTION_FILE, if all there; CALIBRATION=DIR: frames to run int8 on) to STAGE_DIR
	$(PY) -m tools.stage --make --dir $(STAGE_DIR) --file $(FUNCTION_FILE) --weights-dir $(WEIGHTS_DIR) \
		$(if $(ALLOW_SYNTHETIC),--allow-synthetic) $(if $(CALIBRATION),--calibration $(CALIBRATION))

deploy-local: ## Deploy FUNCTION_FILE with nuctl --platform local into project cvat (NETWORK=cvat_cvat)
	$(call require,$(NUCTL),$(NUCTL_HINT))
	$(call require,$(DOCKER),$(DOCKER_HINT))
	$(check_engine)
	$(check_base_image)
	@$(MAKE) --no-print-directory stage
	$(NUCTL) get project cvat --platform local >/dev/null 2>&1 || $(NUCTL) create project cvat --platform local
	$(NUCTL) deploy --project-name cvat --path $(STAGE_DIR) --file $(STAGE_DIR)/$(FUNCTION_FILE) --platform local \
		$(GPU_ARGS) $(if $(NETWORK),--platform-config '{"attributes": {"network": "$(NETWORK)"}}') $(NUCTL_ARGS)

deploy-kube: ## Deploy FUNCTION_FILE with nuctl --platform kube (REGISTRY, NAMESPACE, SERVICE_TYPE)
	$(call require,$(NUCTL),$(NUCTL_HINT))
	$(call require,$(DOCKER),$(DOCKER_HINT))
	@test -n "$(REGISTRY)" || { echo "error: set REGISTRY to a registry the cluster pulls from, e.g. make deploy-kube REGISTRY=registry.example.com/cvat" >&2; exit 1; }
	$(check_engine)
	$(check_base_image)
	@$(MAKE) --no-print-directory stage
	$(NUCTL) get project cvat --platform kube --namespace $(NAMESPACE) >/dev/null 2>&1 \
		|| $(NUCTL) create project cvat --platform kube --namespace $(NAMESPACE)
	$(NUCTL) deploy --project-name cvat --path $(STAGE_DIR) --file $(STAGE_DIR)/$(FUNCTION_FILE) --platform kube \
		--namespace $(NAMESPACE) --registry $(REGISTRY) $(if $(RUN_REGISTRY),--run-registry $(RUN_REGISTRY)) \
		--http-trigger-service-type $(SERVICE_TYPE) $(GPU_ARGS) $(NUCTL_ARGS)

bench: $(STAMP) ## Measure speed on this machine (python -m bench, bench.engines, bench.video) and update docs/performance.md's figures
	$(PY) -m bench $(BENCH_ARGS)
	$(PY) -m bench.engines $(if $(findstring --quick,$(BENCH_ARGS)),--quick)
	$(PY) -m bench.report --docs docs/performance.md
	$(PY) -m bench.video

bench-tracking: $(STAMP) ## Install the peers (ByteTrack, OC-SORT) and evaluators, then compare identities (python -m bench.tracking)
	$(PY) -m pip install --no-deps -r requirements-bench.txt
	$(PY) -m bench.tracking $(if $(findstring --quick,$(BENCH_ARGS)),--quick)

clean: ## Remove build output and caches (keeps .venv and the weights)
	rm -rf build .pytest_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
