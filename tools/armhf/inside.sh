#!/bin/bash
# Run by tools/armhf/test.sh inside the armhf chroot (under qemu-arm): build the armv7l
# wheel, install it, run the platform-sensitive tests, measure the conversion.
set -euo pipefail
VENV=/opt/edge-actors-venv
PY=$VENV/bin/python
PIP=("$PY" -m pip --disable-pip-version-check)
say() { printf 'arm-test (inside, %s): %s\n' "$(uname -m)" "$*" >&2; }

# Kept between runs: the venv over Debian's numpy, Pillow and PyYAML.
if [ ! -x "$PY" ]; then
    say "making $VENV (--system-site-packages)"
    python3 -m venv --system-site-packages "$VENV"
fi

# 3. The armv7l wheel, from the working tree, with the extension required. setup.py
#    compiles it for the armhf baseline; the NEON kernels are clones chosen at run time.
say "building the wheel (Cython and gcc under emulation)"
rm -rf /work/dist
cd /work/src
EDGE_ACTORS_REQUIRE_EXT=1 "${PIP[@]}" wheel --quiet --no-deps --wheel-dir /work/dist .
WHEEL=$(ls /work/dist/edge_actors-*.whl)
case "$WHEEL" in
    *-linux_armv7l.whl) say "built $(basename "$WHEEL")" ;;
    *) say "error: $WHEEL is not tagged linux_armv7l"; exit 1 ;;
esac

# Only binary (armv7l or pure-Python) wheels from the index, and Debian's packages: what
# `pip install edge-actors` does on a Raspberry Pi with python3-numpy and python3-pil.
say "installing the wheel and its dependencies"
"${PIP[@]}" install --quiet --only-binary=:all: --force-reinstall --no-deps "$WHEEL"
"${PIP[@]}" install --quiet --only-binary=:all: "$WHEEL"
TEST_DEPS=("pytest>=8" "pytest-timeout>=2.3" "hypothesis>=6.100")
if [ "$(cat "$VENV/.test-deps" 2>/dev/null)" != "${TEST_DEPS[*]}" ]; then
    "${PIP[@]}" install --quiet --only-binary=:all: "${TEST_DEPS[@]}"
    printf '%s\n' "${TEST_DEPS[*]}" >"$VENV/.test-deps"
fi
cd /
"$PY" - <<'PY'
import platform, numpy, PIL
import actors, actors._native_imgconv as ext
from actors.ml import convert
assert platform.machine() == "armv7l", platform.machine()
assert convert.NATIVE, "the extension did not load"
print(f"imported edge-actors from {actors.__file__} on {platform.machine()}: numpy "
      f"{numpy.__version__}, Pillow {PIL.__version__}, extension SIMD level {ext.simd_level()}")
PY
"$PY" -m actors --help >/dev/null
# The runtime starts and deploys a component without any ML runtime installed.
say "edge-actors run: a local deployment of com.example.HelloWorld"
rm -rf /tmp/edge-actors-smoke
"$PY" -m actors run --root /tmp/edge-actors-smoke --recipeDir /work/src/recipes \
    --artifactDir /work/src/recipes/artifacts --merge com.example.HelloWorld=1.0.0 \
    --exit-when-done 2>&1 | tee /tmp/edge-actors-smoke.log | grep -E "SUCCEEDED|Hello" \
    || { cat /tmp/edge-actors-smoke.log >&2; say "error: the local deployment failed"; exit 1; }

# Inference end to end, as `make run` does it on a Raspberry Pi: the DLR stacks deployed
# from their recipes (ModelResourceKey armv7l), models compiled for armv7l, run by the
# graph executor; chelsea.png must be a cat and the astronaut's face found.
status=0
if [ -d /work/artifacts ]; then
    say "inference: the DLR image-classification and face-detection stacks"
    rm -rf /tmp/edge-actors-ml
    started=$(date +%s)
    "$PY" -m actors run --root /tmp/edge-actors-ml --recipeDir /work/src/recipes \
        --artifactDir /work/artifacts --merge edge.ImageClassification.DLR=1.0.0 \
        --merge edge.ObjectDetection.DLR=1.0.0 --update-config \
        '{"edge.ImageClassification.DLR": {"MERGE": {"InferenceInterval": 0}},
          "edge.ObjectDetection.DLR": {"MERGE": {"InferenceInterval": 0}}}' \
        --exit-when-done >/tmp/edge-actors-ml.log 2>&1 || true
    grep -E "\] (image |[a-z]+\.(png|jpg) )" /tmp/edge-actors-ml.log >&2 || true
    if grep -Eq "chelsea.png +(tabby|tiger cat|Persian cat|Siamese cat|Egyptian cat) " \
            /tmp/edge-actors-ml.log && grep -Eq "astronaut.png +face " /tmp/edge-actors-ml.log
    then
        say "inference on armv7l: chelsea.png is a cat, the astronaut's face is found" \
            "($(( $(date +%s) - started )) s under emulation)"
    else
        tail -n 60 /tmp/edge-actors-ml.log >&2
        say "error: inference on armv7l did not classify chelsea.png as a cat and find a face"
        status=1
    fi
else
    say "warning: no armv7l model components staged: inference not run"
fi

# The platform-sensitive tests, against the installed wheel (no actors/ in /work/tests).
cd /work/tests
export EDGE_ACTORS_TEST_IMAGES=/work/images
CONVERT=(tests/ml/test_convert.py tests/ml/test_decode.py)
read -r -a MORE <<<"${ARMHF_PYTEST_ARGS:-}"
if [ -n "${ARMHF_TESTS:-}" ]; then
    read -r -a SELECTED <<<"$ARMHF_TESTS"
    "$PY" -m pytest -q "${MORE[@]}" "${SELECTED[@]}" || status=1
else
    say "conversion and decode tests, NEON"
    "$PY" -c "import actors._native_imgconv as e, sys; sys.exit(e.simd_level() != 1)" \
        || { say "error: NEON is not selected on the default CPU model"; status=1; }
    "$PY" -m pytest -q "${MORE[@]}" "${CONVERT[@]}" || status=1
    say "conversion and decode tests, no NEON (QEMU_CPU=cortex-r5f)"
    QEMU_CPU=cortex-r5f "$PY" -c "import actors._native_imgconv as e, sys; sys.exit(e.simd_level() != 0)" \
        || { say "error: NEON is selected on cortex-r5f"; status=1; }
    QEMU_CPU=cortex-r5f "$PY" -m pytest -q "${MORE[@]}" "${CONVERT[@]}" || status=1
    say "kernel, recipe, component lifecycle, IPC, runtimes"
    "$PY" -m pytest -q "${MORE[@]}" tests/kernel tests/recipe tests/component tests/ipc \
        tests/ml/test_runtimes.py || status=1
fi
if [ "${ARMHF_MEASURE:-1}" != 0 ]; then
    say "measuring the conversion"
    "$PY" /work/measure.py | tee /work/measure.txt || status=1
fi
exit $status
