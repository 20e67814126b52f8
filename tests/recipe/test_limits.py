"""Recipe parsing limits: deep, huge and self-referencing files, and long dependency
chains, get a clear error (never RecursionError, never a traceback); and a fuzz of
the loader (structure and size) that only ever sees RecipeError."""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.deploy import resolve, start_order
from actors.recipe import Platform, RecipeError, load_recipe, parse_recipe
from actors.recipe._load import MAX_DEPTH, MAX_RECIPE_BYTES, MAX_VALUES

from .test_recipes import VALID

AMD64 = Platform("linux", "amd64")
HEADER = 'RecipeFormatVersion: "2020-01-25"\nComponentName: x.Deep\nComponentVersion: "1.0.0"\n'


def deep_yaml(levels: int) -> str:
    """A 40 KB-class recipe whose configuration nests ``levels`` deep."""
    return HEADER + "ComponentConfiguration:\n  DefaultConfiguration:\n    a: " + \
        "[" * levels + "]" * levels + "\n"


def test_a_deeply_nested_yaml_recipe_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(deep_yaml(20_000))
    assert path.stat().st_size > 40_000
    with pytest.raises(RecipeError) as info:
        load_recipe(path, AMD64)
    assert str(info.value).startswith(f"{path}: the recipe nests mappings and lists deeper "
                                      f"than {MAX_DEPTH} levels (line 6, column ")
    block = tmp_path / "block.yaml"  # block style nests through indentation
    block.write_text(HEADER + "Lifecycle:\n" + "".join(
        f"{'  ' * (i + 1)}k{i}:\n" for i in range(500)) + "  " * 501 + "v: 1\n")
    with pytest.raises(RecipeError, match="deeper than 64 levels"):
        load_recipe(block, AMD64)


def test_deep_json_and_structures_are_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text('{"a": ' + "[" * 5_000 + "]" * 5_000 + "}")
    with pytest.raises(RecipeError, match="not valid JSON"):
        load_recipe(path, AMD64)
    nested: Any = []
    for _ in range(MAX_DEPTH):
        nested = [nested]
    data = {**copy.deepcopy(VALID), "ComponentConfiguration": {
        "DefaultConfiguration": {"a": nested}}}
    with pytest.raises(RecipeError, match=f"deeper than {MAX_DEPTH} levels"):
        parse_recipe(data, tmp_path / "r.json", AMD64)


def test_aliases_that_expand_or_refer_to_themselves_are_refused(tmp_path: Path) -> None:
    laughs = HEADER + "ComponentConfiguration:\n  DefaultConfiguration:\n" + textwrap.indent(
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n"
            for i in range(8)), "    ")
    path = tmp_path / "laughs.yaml"
    path.write_text(laughs)
    assert path.stat().st_size < 2_000
    with pytest.raises(RecipeError, match=f"more than {MAX_VALUES:,} values"):
        load_recipe(path, AMD64)
    loop = tmp_path / "loop.yaml"
    loop.write_text(HEADER + "ComponentConfiguration:\n  DefaultConfiguration:\n"
                    "    a: &a [1, *a]\n")
    with pytest.raises(RecipeError, match="refers to itself"):
        load_recipe(loop, AMD64)


def test_a_huge_recipe_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text(HEADER + "ComponentDescription: " + "x" * MAX_RECIPE_BYTES + "\n")
    with pytest.raises(RecipeError, match=r"huge.yaml: the recipe is larger than 1024 KiB"):
        load_recipe(path, AMD64)


def test_recipe_check_prints_no_traceback_on_hostile_files(tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text(deep_yaml(20_000))
    checked = subprocess.run([sys.executable, "-m", "actors", "recipe", "check", str(deep)],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 1
    assert "Traceback" not in checked.stderr
    assert f"{deep}: the recipe nests mappings and lists deeper than" in checked.stderr


def chain(length: int) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for i in range(length):
        deps = {f"c{i + 1}": {"VersionRequirement": "^1.0.0"}} if i + 1 < length else {}
        recipe = parse_recipe({"RecipeFormatVersion": "2020-01-25", "ComponentName": f"c{i}",
                               "ComponentVersion": "1.0.0", "ComponentDependencies": deps},
                              Path(f"c{i}.yaml"), AMD64)
        out[recipe.name] = [recipe]
    return out


def test_a_long_dependency_chain_resolves_and_orders() -> None:
    chosen = resolve({"g": {"c0": "1.0.0"}}, chain(1_200))
    assert len(chosen) == 1_200
    order = start_order(chosen)
    assert order[0] == "c1199" and order[-1] == "c0"


# -- fuzz ----------------------------------------------------------------------

KEYS = ["RecipeFormatVersion", "ComponentName", "ComponentVersion", "Manifests", "Lifecycle",
        "Platform", "Artifacts", "URI", "Digest", "Timeout", "Script", "Run", "Setenv",
        "Skipif", "Selections", "ComponentDependencies", "VersionRequirement", "all", "os",
        "DefaultConfiguration", "ComponentConfiguration", "Permission", "Unarchive"]
INTS = st.integers(-(2**63), 2**63 - 1)  # what JSON files hold (orjson's range)
SCALARS = st.one_of(st.none(), st.booleans(), INTS, st.floats(),
                    st.text(max_size=20),
                    st.sampled_from(["s3://b/k", "greengrass:x.zip", "docker:a:b", ">= 1.0.0",
                                     "{configuration:/t}", "!onpath sh", "1.0.0", "linux",
                                     "/a(/", "2020-01-25", "*"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8), INTS),
                    inner, max_size=4)), max_leaves=30)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzzed_structures_only_ever_raise_recipe_error(data: st.DataObject) -> None:
    recipe = copy.deepcopy(VALID)
    for _ in range(data.draw(st.integers(1, 4))):
        path = data.draw(st.sampled_from(_paths(recipe)))
        value = data.draw(VALUES)
        if not path:
            recipe = value
            continue
        node = recipe
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    try:
        parse_recipe(recipe, Path("fuzz.yaml"), AMD64)
    except RecipeError:
        pass


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzzed_files_only_ever_raise_recipe_error(data: st.DataObject) -> None:
    text = yaml.safe_dump(VALID)
    kind = data.draw(st.sampled_from(["cut", "insert", "repeat", "nest", "json"]))
    if kind == "cut":
        text = text[:data.draw(st.integers(0, len(text)))]
    elif kind == "insert":
        at = data.draw(st.integers(0, len(text)))
        text = text[:at] + data.draw(st.text(alphabet="[]{}:-&*!|>'\"\n #%@`,?x1",
                                             max_size=60)) + text[at:]
    elif kind == "repeat":
        text = data.draw(st.text(alphabet="[{&*a: -\n", min_size=1, max_size=4)) * \
            data.draw(st.integers(1, 2_000))
    elif kind == "nest":
        n = data.draw(st.integers(1, 1_000))
        text += "Extra: " + "[{a: " * n + "}]" * n + "\n"
    else:
        text = orjson.dumps(data.draw(VALUES), option=orjson.OPT_NON_STR_KEYS).decode()
    suffix = ".json" if kind == "json" else ".yaml"
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzz{suffix}"
        path.write_text(text)
        try:
            load_recipe(path, AMD64)
        except RecipeError as exc:
            assert str(exc).startswith(f"{path}") and "\n" not in str(exc)
