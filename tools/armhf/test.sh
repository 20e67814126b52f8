#!/usr/bin/env bash
# `make arm-test`: build, install and test edge-actors in the emulated Raspberry Pi OS
# (Debian bookworm armhf) userland that tools/armhf/env.sh makes and caches. Needs root.
#
# Inside the chroot: a --system-site-packages venv over Debian's numpy 1.24, Pillow 9.4
# and PyYAML (what a Raspberry Pi OS user has), kept between runs; the armv7l wheel built
# from the working tree with the extension required (NEON chosen at run time), copied to
# build/armv7l/, installed with only binary or pure-Python dependencies from the index and
# imported; the getting-started HelloWorld and the DLR image-classification and
# face-detection stacks deployed (models cross-compiled for armv7l on the host with the
# cross gcc of `make cross`); then the platform-sensitive tests run against the installed
# wheel (a copy of tests/ and recipes/ without the source package), the conversion tests once with NEON and
# once on a CPU model without it, and the conversion measured (tools/armhf/measure.py).
#
#   ARMHF_TESTS="tests/kernel ..."   run these instead of the default selection
#   ARMHF_PYTEST_ARGS="-x -k ..."    more pytest arguments
#   ARMHF_MEASURE=0                  skip the measurement
set -euo pipefail

CLONE=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$CLONE/build/armv7l
say() { printf 'arm-test: %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || { say "error: run as root (chroot, mounts): sudo make arm-test"; exit 1; }
started=$(date +%s)
# One run at a time per environment (a CI run and a developer's may meet).
LOCK=${ARMHF_ROOT:-/var/cache/edge-actors/armhf}.lock
mkdir -p "$(dirname "$LOCK")"
exec 9>"$LOCK"
flock -w 7200 9 || { say "error: $LOCK stayed locked for 2 hours"; exit 1; }
ROOT=$("$CLONE/tools/armhf/env.sh" | tail -n 1)
say "environment ready after $(( $(date +%s) - started )) s: $ROOT"

# The working tree (tracked and untracked files git does not ignore), fresh each run.
rm -rf --one-file-system "$ROOT/work/src" "$ROOT/work/tests"
mkdir -p "$ROOT/work/src" "$ROOT/work/tests" "$ROOT/work/images" "$OUT"
git -C "$CLONE" ls-files -z --cached --others --exclude-standard \
    | tar --create --file - --directory "$CLONE" --null --files-from - --ignore-failed-read \
          2>/dev/null \
    | tar --extract --directory "$ROOT/work/src"
# The tests run against the installed wheel: a copy of tests/ and recipes/ without actors/.
cp -a "$ROOT/work/src/tests" "$ROOT/work/src/recipes" "$ROOT/work/src/pyproject.toml" \
    "$ROOT/work/tests/"

# The real photographs of the conversion tests ship in scikit-learn and scikit-image, which
# have no armv7l wheels: copy the files from the host's venv when it has them.
HOST_PY=${ARMHF_HOST_PYTHON:-$CLONE/.venv/bin/python}
if [ -x "$HOST_PY" ]; then
    "$HOST_PY" - "$ROOT/work/images" <<'PY' || say "warning: no test images copied"
import importlib.util, pathlib, shutil, sys
for package, folder, names in [("sklearn", "datasets/images", ["china.jpg", "flower.jpg"]),
                               ("skimage", "data", ["chelsea.png", "astronaut.png", "coffee.png"])]:
    spec = importlib.util.find_spec(package)
    if spec and spec.origin:
        for name in names:
            src = pathlib.Path(spec.origin).parent / folder / name
            if src.is_file():
                shutil.copy(src, sys.argv[1])
PY
fi
[ -n "$(ls -A "$ROOT/work/images")" ] \
    || say "warning: no test images (make .venv/.installed on the host first): the photo tests skip"

# The model components a Raspberry Pi deploys (MobileNetV2 and MTCNN compiled for armv7l
# with Debian's cross gcc, `make cross`), staged on the host as `make run` stages them:
# inside, the DLR stacks run them with the graph executor (no libdlr for armv7l).
rm -rf --one-file-system "$ROOT/work/artifacts"
if [ -x "$HOST_PY" ] && command -v arm-linux-gnueabihf-gcc >/dev/null; then
    say "staging the armv7l model components (cross-compiled; cached after the first run)"
    if "$HOST_PY" -m actors.ml.stage --recipes "$CLONE/recipes" --out "$OUT/artifacts" \
            --platform architecture=arm,architecture.detail=arm71 >"$OUT/stage.log" 2>&1; then
        cp -a "$OUT/artifacts" "$ROOT/work/artifacts"
    else
        cat "$OUT/stage.log" >&2
        say "error: the armv7l model components could not be staged (log above)"
        exit 1
    fi
else
    say "warning: no host venv or no arm-linux-gnueabihf-gcc (make test, make cross first):" \
        "no inference inside"
fi

# Name resolution and the host's pip settings (index, certificates) for pip inside.
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
[ -f /etc/pip.conf ] && cp /etc/pip.conf "$ROOT/etc/pip.conf"
# The host's CA bundle too: it may trust a proxy in front of the index that Debian does not.
if [ -s /etc/ssl/certs/ca-certificates.crt ]; then
    cp -L /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
fi
cp "$CLONE/tools/armhf/inside.sh" "$CLONE/tools/armhf/measure.py" "$ROOT/work/"

# A private mount namespace: /proc, /sys, /dev inside the chroot vanish with it, whatever
# happens to this script.
set +e
unshare --mount --propagation private /bin/bash -euc '
    R=$1; shift
    mount -t proc proc "$R/proc"
    mount -t sysfs -o ro sysfs "$R/sys"
    mount --bind /dev "$R/dev"
    mount --bind /dev/pts "$R/dev/pts"
    mount -t tmpfs -o mode=1777 tmpfs "$R/dev/shm"
    exec chroot "$R" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
' inside "$ROOT" /usr/bin/env \
    PIP_DEFAULT_TIMEOUT="${PIP_DEFAULT_TIMEOUT:-180}" \
    ARMHF_TESTS="${ARMHF_TESTS:-}" ARMHF_PYTEST_ARGS="${ARMHF_PYTEST_ARGS:-}" \
    ARMHF_MEASURE="${ARMHF_MEASURE:-1}" \
    /bin/bash /work/inside.sh
status=$?
set -e
cp "$ROOT"/work/dist/*.whl "$OUT/" 2>/dev/null && say "armv7l wheel: $(ls "$OUT"/*.whl)"
cp "$ROOT/work/measure.txt" "$OUT/" 2>/dev/null || true
say "finished in $(( $(date +%s) - started )) s (status $status)"
exit $status
