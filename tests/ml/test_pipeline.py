"""The classification pipeline: the fast preparation path, decoding overlapped with
model runs, micro-batches under load, failures kept to their own request."""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import numpy as np
import pytest

from actors.ml.models import ModelManifest
from actors.ml.runtimes import RunnerOptions
from actors.ml.tasks import ImageError, Prediction, open_classifier
from actors.ml.tasks._image import fit, load_image, prepare, to_chw
from actors.ml.tasks.batching import Pipeline, PipelineClosed, PipelineOptions

pytest_plugins = ["tests.ml._model_fixtures"]
pytestmark = pytest.mark.anyio

CATS = range(281, 286)


async def test_the_fast_preparation_matches_the_plain_pillow_path(mobilenet: ModelManifest,
                                                                  chelsea: Path) -> None:
    # Decode-time scaling, the crop taken before resizing and the native kernel
    # against Pillow's resize then crop then numpy: the same picture, within the
    # differences of two resamplers, and the same answer from the model.
    fast = prepare(chelsea, mobilenet.preprocess)
    plain = to_chw(fit(load_image(chelsea), mobilenet.preprocess), mobilenet.preprocess)
    assert fast.shape == plain.shape == (3, 224, 224) and fast.dtype == np.float32
    assert float(np.abs(fast - plain).mean()) < 0.08  # normalised units (std ~1)
    classifier = await open_classifier(mobilenet, threshold=0.0)
    assert classifier.classify_batch(fast[None])[0][0].index == \
        classifier.classify_batch(plain[None])[0][0].index
    # Into a slot of a caller's batch, without a copy.
    batch = np.zeros((2, 3, 224, 224), np.float32)
    slot = batch[1]
    assert prepare(chelsea.read_bytes(), mobilenet.preprocess, slot) is slot  # noqa: ASYNC240
    np.testing.assert_array_equal(batch[1], fast)
    assert not batch[0].any()


async def test_concurrent_requests_share_batches_and_get_their_own_answers(
        mobilenet: ModelManifest, chelsea: Path, coffee: Path) -> None:
    classifier = await open_classifier(mobilenet, options=RunnerOptions(threads=1),
                                       threshold=0.0)
    images = [chelsea.read_bytes(), coffee.read_bytes()] * 8  # noqa: ASYNC240
    expected = [classifier.classify_sync(image) for image in images[:2]]
    answers: list[list[Prediction]] = [[] for _ in images]
    async with Pipeline(classifier, PipelineOptions(max_batch=4)) as pipeline:

        async def one(i: int) -> None:
            answers[i] = await pipeline.classify(images[i])

        async with anyio.create_task_group() as tg:
            for i in range(len(images)):
                tg.start_soon(one, i)
        stats = pipeline.statistics()
    for i, answer in enumerate(answers):
        want = expected[i % 2]
        assert [p.index for p in answer] == [p.index for p in want]
        np.testing.assert_allclose([p.score for p in answer], [p.score for p in want],
                                   atol=1e-4)
    assert answers[0][0].index in CATS and answers[1][0].index not in CATS
    # While a run was busy the next requests queued and ran together.
    assert stats.images == 16 and stats.failures == 0
    assert 1 < stats.largest_batch <= 4 and stats.runs < 16


async def test_the_all_cores_session_runs_only_requests_that_are_alone(
        mobilenet: ModelManifest, chelsea: Path) -> None:
    # One request at a time: each is prepared and run on the session with every core.
    # Under load: the single-threaded runs side by side, never the all-cores session
    # beside them (it would fight them and the decoding for the cores).
    shared = await open_classifier(mobilenet, options=RunnerOptions(threads=1, concurrency=2))
    alone = await open_classifier(mobilenet, options=RunnerOptions(threads=0))
    image = chelsea.read_bytes()  # noqa: ASYNC240
    async with Pipeline(shared, PipelineOptions(runs=2), alone=alone) as pipeline:
        for _ in range(3):
            await pipeline.classify(image)
        assert (alone.runner.statistics().runs, shared.runner.statistics().runs) == (3, 0)
        async with anyio.create_task_group() as tg:
            for _ in range(12):
                tg.start_soon(pipeline.classify, image)
        # Only the first of the twelve found nothing else under way.
        assert alone.runner.statistics().runs == 4
        assert shared.runner.statistics().runs == 11
        assert pipeline.statistics().images == 15


async def test_a_bad_image_fails_only_its_own_request(mobilenet: ModelManifest,
                                                      chelsea: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not a JPEG after all")
    classifier = await open_classifier(mobilenet, options=RunnerOptions(threads=1))
    outcome: dict[str, object] = {}
    async with Pipeline(classifier, PipelineOptions(max_batch=4)) as pipeline:

        async def one(key: str, image: Path) -> None:
            try:
                outcome[key] = await pipeline.classify(image)
            except ImageError as exc:
                outcome[key] = exc

        async with anyio.create_task_group() as tg:
            tg.start_soon(one, "good", chelsea)
            tg.start_soon(one, "bad", broken)
            tg.start_soon(one, "good again", chelsea)
        with pytest.raises(FileNotFoundError, match="missing.png"):
            await pipeline.classify(tmp_path / "missing.png")
    assert isinstance(outcome["bad"], ImageError) and "broken.jpg" in str(outcome["bad"])
    good = outcome["good"]
    assert isinstance(good, list) and good[0].index in CATS
    assert outcome["good again"] == good
    with pytest.raises(PipelineClosed, match="async with"):
        await pipeline.classify(chelsea)


async def test_requests_whose_askers_gave_up_are_skipped(mobilenet: ModelManifest,
                                                        chelsea: Path) -> None:
    classifier = await open_classifier(mobilenet, options=RunnerOptions(threads=1))
    image = chelsea.read_bytes()  # noqa: ASYNC240
    async with Pipeline(classifier) as pipeline:
        with anyio.move_on_after(0.005):
            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(pipeline.classify, image)
        # One worker: at most the image it had started when the askers left, and the
        # next it took before seeing that, ran; the rest were dropped unprepared.
        answer = await pipeline.classify(image)
        assert answer[0].index in CATS
        assert classifier.runner.statistics().runs <= 3
        assert pipeline.statistics().failures == 0


async def test_a_failed_body_stops_the_workers_without_running_the_queue(
        mobilenet: ModelManifest, chelsea: Path) -> None:
    classifier = await open_classifier(mobilenet, options=RunnerOptions(threads=1))
    image = chelsea.read_bytes()  # noqa: ASYNC240
    outcomes: list[str] = []

    async def one(pipeline: Pipeline) -> None:
        try:
            await pipeline.classify(image)
            outcomes.append("ran")
        except PipelineClosed:
            outcomes.append("closed")

    async with anyio.create_task_group() as waiters:  # outlive the pipeline's body
        with pytest.raises(KeyError, match="stop"):
            async with Pipeline(classifier, PipelineOptions(runs=1)) as pipeline:
                for _ in range(20):
                    waiters.start_soon(one, pipeline)
                await anyio.sleep(0.002)
                raise KeyError("stop")
    assert not [t for t in threading.enumerate() if t.name.startswith("edge-actors-pipeline")]
    assert len(outcomes) == 20 and outcomes.count("ran") <= 3, outcomes
    assert classifier.runner.statistics().runs == outcomes.count("ran")


async def test_an_error_in_the_body_comes_out_unwrapped(mobilenet: ModelManifest) -> None:
    classifier = await open_classifier(mobilenet, options=RunnerOptions(threads=1))
    with pytest.raises(KeyError, match="mine"):
        async with Pipeline(classifier):
            raise KeyError("mine")


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="max_batch must be a positive int"):
        PipelineOptions(max_batch=0)
    with pytest.raises(ValueError, match="nice must be an int >= 0"):
        PipelineOptions(nice=-1)


def _nice(thread_id: int) -> int:
    """A thread's nice value: field 19 of /proc/self/task/N/stat."""
    stat = Path(f"/proc/self/task/{thread_id}/stat").read_text()
    return int(stat[stat.rindex(")") + 2:].split()[16])


def _threads() -> set[int]:
    return {int(task.name) for task in Path("/proc/self/task").iterdir()}


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc")
async def test_inference_threads_run_below_the_event_loop(mobilenet: ModelManifest,
                                                          chelsea: Path) -> None:
    # The runtime's pool threads (started while loading) and the pipeline workers are
    # lowered; the event loop's thread and anyio's worker threads are not.
    before = _threads()
    classifier = await open_classifier(mobilenet, options=RunnerOptions(threads=2, nice=3))
    python = {t.native_id for t in threading.enumerate()}
    pool = _threads() - before - python
    assert pool and {_nice(t) for t in pool} == {3}  # ONNX Runtime's intra-op thread
    async with Pipeline(classifier, PipelineOptions(nice=3)) as pipeline:
        await pipeline.classify(chelsea.read_bytes())  # noqa: ASYNC240
        workers = [t for t in threading.enumerate() if t.name.startswith("edge-actors-pipeline")]
        assert workers and {_nice(t.native_id) for t in workers} == {3}  # type: ignore[arg-type]
    assert _nice(threading.get_native_id()) == 0
    anyio_threads = [t for t in threading.enumerate() if t.name == "AnyIO worker thread"]
    assert anyio_threads and {_nice(t.native_id) for t in anyio_threads} == {0}  # type: ignore[arg-type]


async def test_requests_one_at_a_time_go_to_the_same_worker(mobilenet: ModelManifest,
                                                            chelsea: Path) -> None:
    # The worker idle most recently takes the next request: one at a time, always the
    # same thread (warm); several at once, both.
    classifier = await open_classifier(mobilenet, options=RunnerOptions(threads=1, concurrency=2))
    threads: list[str] = []
    prepare = classifier.prepare

    def recording(image: object, out: object = None) -> np.ndarray:
        threads.append(threading.current_thread().name)
        return prepare(image)  # type: ignore[arg-type]

    classifier.prepare = recording  # type: ignore[method-assign]
    image = chelsea.read_bytes()  # noqa: ASYNC240
    async with Pipeline(classifier, PipelineOptions(runs=2)) as pipeline:
        for _ in range(6):
            await pipeline.classify(image)
        assert len(set(threads)) == 1
        threads.clear()
        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(pipeline.classify, image)
        assert set(threads) == {"edge-actors-pipeline-0", "edge-actors-pipeline-1"}


async def test_submit_returns_a_future_of_what_then_makes_of_the_predictions(
        mobilenet: ModelManifest, chelsea: Path) -> None:
    classifier = await open_classifier(mobilenet, options=RunnerOptions(threads=1))
    image = chelsea.read_bytes()  # noqa: ASYNC240

    def broken(predictions: list[Prediction]) -> str:
        raise LookupError(f"no message for {len(predictions)} predictions")

    async with Pipeline(classifier) as pipeline:
        top = pipeline.submit(image, lambda predictions: predictions[0].index)
        failing = pipeline.submit(image, broken)
        plain = pipeline.submit(image)
        assert await top in CATS
        with pytest.raises(LookupError, match=r"no message for \d+ predictions"):
            await failing
        assert (await plain)[0].index == await top
        stats = pipeline.statistics()
    assert (stats.images, stats.failures) == (3, 0)  # `then` failing is not a run failing
    with pytest.raises(PipelineClosed):
        pipeline.submit(image)
