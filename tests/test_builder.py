"""The builder base: sources, group names, shared checks, file reports, seeded caps; and builders as peers."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import needle.datasets
from needle.datasets.builder import (
    FileReport,
    as_source_list,
    cap_positives,
    check_context_length,
    check_min_positives,
    check_positive_ratio,
    find_files,
    materialize,
    name_seed,
    plain_params,
    progress,
    source_stems,
    treebank_or_files,
    unique_stems,
)
from needle.datasets.shared_data import ENV_VAR
from needle.errors import InputError

#: Every module that builds a collection (or, like ``windows``, builds for several).
BUILDER_MODULES = (
    "ud", "text_features", "python_code", "natural_language", "genre", "compound_words", "next_token",
    "code_language", "latex", "entity_facts", "windows",
)  # fmt: skip
DATASETS = Path(needle.datasets.__file__).parent


def _private_imports_from_builders(module: str, directory: Path = DATASETS) -> list[str]:
    """``module``'s imports of underscore names from other builder modules (``from … import _x``, ``mod._x``)."""
    tree = ast.parse((directory / f"{module}.py").read_text())
    others = {f"needle.datasets.{m}" for m in BUILDER_MODULES if m != module}
    found, aliases = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in others:
            found += [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
        elif isinstance(node, ast.ImportFrom) and node.module == "needle.datasets":
            aliases.update({a.asname or a.name: f"needle.datasets.{a.name}" for a in node.names})
        elif isinstance(node, ast.Import):
            aliases.update({a.asname: a.name for a in node.names if a.asname and a.name in others})
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.attr.startswith("_")
                and aliases.get(node.value.id) in others):
            found.append(f"{aliases[node.value.id]}.{node.attr}")
    return found


@pytest.mark.parametrize("module", BUILDER_MODULES)
def test_no_builder_imports_another_builders_private_names(module):
    assert (DATASETS / f"{module}.py").is_file()
    assert _private_imports_from_builders(module) == []


def _builder_imports(module: str) -> set[str]:
    """The other builder modules that ``module`` imports anything from."""
    tree = ast.parse((DATASETS / f"{module}.py").read_text())
    others = {f"needle.datasets.{m}" for m in BUILDER_MODULES if m != module}
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in others:
            found.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.module == "needle.datasets":
            found |= {f"needle.datasets.{a.name}" for a in node.names} & others
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names} & others
    return found


@pytest.mark.parametrize("module", BUILDER_MODULES)
def test_builders_are_peers_sharing_only_the_window_library(module):
    # Readers, packing and the builder base hold what builders share; windows builds window collections.
    assert _builder_imports(module) <= {"needle.datasets.windows"}


def test_the_private_import_check_sees_both_forms(tmp_path):
    fake = tmp_path / "datasets"
    fake.mkdir()
    (fake / "ud.py").write_text("from needle.datasets.windows import _is_int, check_window_params\n")
    (fake / "genre.py").write_text("from needle.datasets import python_code as pc\nx = pc._progress\ny = pc.FEATURES\n")
    assert _private_imports_from_builders("ud", fake) == ["needle.datasets.windows._is_int"]
    assert _private_imports_from_builders("genre", fake) == ["needle.datasets.python_code._progress"]


def test_sources_as_given():
    assert as_source_list("a.txt", empty="none") == ["a.txt"]
    assert as_source_list([Path("a"), "b"], empty="none") == ["a", "b"]
    assert as_source_list(iter([Path("a")]), empty="none") == ["a"]
    with pytest.raises(InputError, match="^pass something$"):
        as_source_list([], empty="pass something")
    assert materialize(None) is None and materialize("a") == "a" and materialize({"en": "a"}) == {"en": "a"}
    assert materialize(p for p in ["a", "b"]) == ["a", "b"]


def test_group_prefixes_are_unique():
    assert unique_stems(["x/a.conllu.gz", "y/a.conllu", "b.txt"]) == ["a#1", "a#2", "b.txt"]
    assert source_stems(["x/a.conllu.gz", "b.txt", "c.txt.gz"]) == ["a", "b", "c"]


def test_treebank_or_files(tmp_path, monkeypatch):
    given = tmp_path / "given.conllu"
    given.write_text("")
    assert treebank_or_files([given], what="CoNLL-U files") == [given]
    with pytest.raises(InputError, match="no sources given; pass CoNLL-U files."):
        treebank_or_files([], what="CoNLL-U files")
    with pytest.raises(InputError, match="missing.conllu: no such file"):
        treebank_or_files(tmp_path / "missing.conllu", what="CoNLL-U files")
    (tmp_path / "ud" / "xx_t").mkdir(parents=True)
    for split in ("train", "dev"):
        (tmp_path / "ud" / "xx_t" / f"xx_t-ud-{split}.conllu").write_text("")
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert [p.name for p in treebank_or_files(None, what="-", treebank="xx_t", splits=("train", "dev"))] == [
        "xx_t-ud-train.conllu", "xx_t-ud-dev.conllu"
    ]
    with pytest.raises(InputError, match=ENV_VAR):
        treebank_or_files(None, what="-", treebank="xx_t", splits=("test",))
    with pytest.raises(InputError, match="no such file; check"):
        treebank_or_files(tmp_path / "ud", what="-")
    tree = tmp_path / "ud"
    assert treebank_or_files([tree, given], what="-", directories=True) == [
        tree / "xx_t" / "xx_t-ud-dev.conllu", tree / "xx_t" / "xx_t-ud-train.conllu", given
    ]
    (tmp_path / "none").mkdir()
    with pytest.raises(InputError, match="none: no .conllu or .conllu.gz file in this directory"):
        treebank_or_files(tmp_path / "none", what="-", directories=True)
    with pytest.raises(InputError, match="nowhere: no such file or directory"):
        treebank_or_files(tmp_path / "nowhere", what="-", directories=True)


def test_shared_checks(minilm_tokenizer):
    assert check_context_length(minilm_tokenizer, 4) == 2  # [CLS] and [SEP]
    for bad in (3, 4.0, True, "512"):
        with pytest.raises(InputError, match=r"context_length must be an integer above 3 \(the tokenizer adds 2"):
            check_context_length(minilm_tokenizer, bad)
    check_min_positives(1)
    with pytest.raises(InputError, match=r"^min_positives must be at least 1, not 0\.$"):
        check_min_positives(0)
    check_positive_ratio(None)
    check_positive_ratio(0.5)
    for bad in (0, 1, 1.5, "0.2"):
        with pytest.raises(InputError, match="positive_ratio must be None or in"):
            check_positive_ratio(bad)


def test_plain_params_are_json_numbers():
    params = plain_params({"k": np.int64(3), "r": np.float32(0.5), "s": "x", "l": [1]})
    assert params == {"k": 3, "r": 0.5, "s": "x", "l": [1]}
    assert type(params["k"]) is int and type(params["r"]) is float


def test_progress_off_is_the_items_or_a_silent_bar():
    items = [1, 2]
    assert progress(items, enabled=False, desc="x") is items
    bar = progress(total=3, enabled=False, desc="x")
    bar.update(1)
    bar.close()
    assert list(progress(items, enabled=True, desc="x")) == items


def test_file_report():
    report = FileReport(3)
    report.empty.append("e.py")
    report.skip("a.py", "cannot parse")
    with pytest.raises(InputError, match=r"^b: none of the 3 files could be used \(a.py: cannot parse\)\.$"):
        report.require_some_used("b", "files could be used", empty_note="all empty", fix=".")
    with pytest.raises(InputError, match=r"none of the 0 files \(all empty\); fix it$"):
        FileReport(0).require_some_used("b", "files", empty_note="all empty", fix="; fix it")
    report.used.append("c.py")
    report.require_some_used("b", "files", empty_note="all empty")


def test_positive_caps_are_seeded_per_name():
    assert name_seed("compound:high_school") == name_seed("compound:high_school") != name_seed("math")
    positives = np.arange(0, 100, 3)
    capped = cap_positives(positives, 10, np.random.default_rng([0, name_seed("f")]))
    assert len(capped) == 10 and np.all(np.diff(capped) > 0) and set(capped) <= set(positives)
    again = cap_positives(positives, 10, np.random.default_rng([0, name_seed("f")]))
    assert np.array_equal(capped, again)
    assert cap_positives(positives, None, np.random.default_rng(0)) is positives
    assert cap_positives(positives, 1000, np.random.default_rng(0)) is positives


def test_find_files_names_skips_hidden_and_lists_each_once(tmp_path):
    for name in ("docs/a.tex", "docs/.git/b.tex", "docs/sub/c.tex", "docs/notes.txt", "other/d.tex"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    docs = tmp_path / "docs"
    found = find_files([docs, docs / "sub", tmp_path / "other" / "d.tex"], ".tex", what="-", skip_hidden=True)
    assert [name for _, name in found] == ["docs/a.tex", "docs/sub/c.tex", "other/d.tex"]
    assert all(path.is_absolute() and path.is_file() for path, _ in found)
    assert [name for _, name in find_files(docs, ".tex", what="-")] == [".git/b.tex", "a.tex", "sub/c.tex"]
    assert [name for _, name in find_files(docs / "notes.txt", ".tex", what="-")] == ["notes.txt"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"no \.tex files under .*empty; pass LaTeX sources\.$"):
        find_files(tmp_path / "empty", ".tex", what="LaTeX sources")
