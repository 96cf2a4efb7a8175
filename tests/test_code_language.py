"""The code-language collection: file types with content checks, the 50-token skip, per-language counts."""

from __future__ import annotations

import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest

from needle.datasets.code_language import (
    LANGUAGES,
    SkippedFile,
    build_code_language,
    classify,
    decode_text,
    find_code_files,
    licence_share,
    machine_sources,
)
from needle.datasets.format import AGGREGATIONS, load_dataset
from needle.datasets.registry import build_collection
from needle.errors import InputError

LICENCE = (
    "/*\n * Copyright (c) 2020 Example Authors. All rights reserved.\n"
    " * Licensed under the Apache License, Version 2.0; you may not use this file\n"
    " * except in compliance with the License. Distributed WITHOUT WARRANTY of any kind.\n */\n"
)


def python_source(i: int) -> str:
    return (
        f"def function_{i}(values):\n    total = 0\n    for value in values:\n        total += value * {i}\n"
        f"    return total\n\n\nclass Thing{i}:\n    def method(self, other):\n        return other + {i}\n"
    )


def c_source(i: int) -> str:
    return (
        f"#include <stdio.h>\n\nstatic int counter_{i} = {i};\n\nint add_{i}(int a, int b)\n{{\n"
        f"    return a + b + counter_{i};\n}}\n\nint main(void)\n{{\n    printf(\"%d\\n\", add_{i}(1, 2));\n"
        "    return 0;\n}\n"
    )


def js_source(i: int) -> str:
    return (
        f"const limit{i} = {i};\nfunction visit{i}(items, callback) {{\n  for (const item of items) {{\n"
        f"    if (item.size > limit{i}) {{ callback(item); }}\n  }}\n}}\nmodule.exports = {{ visit{i} }};\n"
    )


def cpp_header(i: int) -> str:
    return (
        f"#pragma once\n#include <vector>\n\nnamespace demo{i} {{\ntemplate <typename T>\nclass Box {{\npublic:\n"
        f"    explicit Box(T value) : value_(value) {{}}\n    T get() const {{ return value_ + {i}; }}\n"
        "private:\n    T value_;\n};\n}\n"
    )


@pytest.fixture
def tree(tmp_path):
    """Two files each of Python, C and JavaScript, a C++ header, and files that must be skipped."""
    root = tmp_path / "src"
    (root / "pkg").mkdir(parents=True)
    (root / "lib").mkdir()
    (root / ".hidden").mkdir()
    for i in range(2):
        (root / "pkg" / f"mod{i}.py").write_text(python_source(i))
        (root / "lib" / f"file{i}.c").write_text(c_source(i))
        (root / "lib" / f"script{i}.js").write_text(js_source(i))
    (root / "lib" / "box.h").write_text(cpp_header(0))
    (root / "lib" / "plain.h").write_text(c_source(7))
    (root / "lib" / "LICENSE_ONLY.c").write_text(LICENCE + "int x;\n")
    (root / "lib" / "blob.c").write_bytes(b"\x7fELF\x00\x01\x02" + bytes(range(256)))
    (root / "lib" / "copy.js").write_text(js_source(0))  # exact duplicate of script0.js
    (root / "lib" / "notes.txt").write_text("not a source file")
    (root / ".hidden" / "secret.py").write_text(python_source(9))
    return root


# --------------------------------------------------------------------------- content checks
def test_classify_uses_suffix_and_content():
    assert classify(frozenset({"c", "cpp"}), cpp_header(0)) == "cpp"
    assert classify(frozenset({"c", "cpp"}), c_source(0) + '#ifdef __cplusplus\nextern "C" {\n#endif\n') == "c"
    sniffed = frozenset(("python", "shell", "perl", "cpp"))
    assert classify(sniffed, "#!/usr/bin/env python3\nprint(1)\n") == "python"
    assert classify(sniffed, "#!/bin/sh\necho hi\n") == "shell"
    assert classify(sniffed, "#!/usr/bin/perl -w\nprint 1;\n") == "perl"
    assert classify(sniffed, "// -*- C++ -*-\n#pragma GCC system_header\nnamespace std {\n}\n") == "cpp"
    with pytest.raises(SkippedFile, match="unrecognised"):
        classify(sniffed, "Just some release notes.\n")
    with pytest.raises(SkippedFile, match="no markup"):
        classify(frozenset({"html"}), "plain text saved as html")
    assert classify(frozenset({"html"}), "<html><body>hi</body></html>") == "html"


def test_decode_text_rejects_binary_and_non_utf8():
    with pytest.raises(SkippedFile, match="binary"):
        decode_text(b"abc\x00def", truncated=False)
    with pytest.raises(SkippedFile, match="binary"):
        decode_text(b"ab" + b"\x01\x02\x03" * 10, truncated=False)
    with pytest.raises(SkippedFile, match="not UTF-8"):
        decode_text(b"caf\xe9 au lait", truncated=False)
    # A prefix cut inside a multi-byte character is fine when the read was truncated.
    assert decode_text("café".encode()[:-1], truncated=True) == "caf"
    assert decode_text(b"a\r\nb\rc", truncated=False) == "a\nb\nc"


def test_licence_share_counts_licence_comment_characters():
    code = "int x = 1;\n"
    text = LICENCE + code
    visible = sum(not c.isspace() for c in text)
    licence_visible = sum(not c.isspace() for c in LICENCE)
    assert licence_share(text) == pytest.approx(licence_visible / visible)
    # A comment without licence words is not licence text; nor is a single licence word.
    assert licence_share("/* Compute the sum of two numbers. */\nint add(int a, int b);\n") == 0.0
    assert licence_share("# see the license section of the manual\nx = 1\n") == 0.0
    # Line comments in a run form one block: two licence words across two lines count.
    hashed = "# Copyright 2021 Someone\n# SPDX-License-Identifier: MIT\nimport os\n"
    expected = sum(not c.isspace() for c in hashed.split("import")[0]) / sum(not c.isspace() for c in hashed)
    assert licence_share(hashed) == pytest.approx(expected)
    assert licence_share("   \n") == 0.0


# --------------------------------------------------------------------------- files
def test_find_code_files_by_suffix_skips_hidden_dirs(tree):
    files = {Path(f.name).name: f.languages for f in find_code_files([tree])}
    assert "secret.py" not in files and "notes.txt" not in files
    assert files["mod0.py"] == {"python"}
    assert files["box.h"] == {"c", "cpp"}
    assert files["script1.js"] == {"javascript"}


def test_zip_members_are_files(tmp_path):
    archive = tmp_path / "src.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("java.base/java/lang/Thing.java", "package java.lang;\nclass Thing {}\n")
        z.writestr("docs/notes.txt", "text")
    (found,) = find_code_files([archive])
    assert found.name == f"{archive.resolve().as_posix()}!/java.base/java/lang/Thing.java"
    assert found.languages == {"java"}
    assert found.read(1000).startswith(b"package java.lang;")


# --------------------------------------------------------------------------- the builder
def build_small(tree, tokenizer, **params):
    settings = {"min_files": 1, "skip_tokens": 5, "min_tokens": 3, "context_length": 64}
    settings.update(params)
    return build_code_language([tree], tokenizer, **settings)


def test_build_labels_files_one_vs_rest(tree, minilm_tokenizer):
    dataset = build_small(tree, minilm_tokenizer)
    assert dataset.feature_names == ["is_python", "is_c", "is_cpp", "is_javascript"]
    groups = [Path(g).name for g in dataset.groups]
    assert sorted(groups) == sorted(
        ["mod0.py", "mod1.py", "file0.c", "file1.c", "plain.h", "box.h", "script0.js", "script1.js"]
    )
    language_of = {"py": "python", "c": "c", "js": "javascript"}
    expected_language = [
        "cpp" if g == "box.h" else "c" if g.endswith(".h") else language_of[g.rsplit(".", 1)[1]] for g in groups
    ]
    ex = dataset.examples
    for index, feature in enumerate(dataset.feature_names):
        rows = np.flatnonzero(ex.feature == index)
        assert len(rows) == dataset.n_sequences  # every file is an example of every language
        truth = [int(f"is_{expected_language[s]}" == feature) for s in ex.sequence[rows]]
        assert ex.label[rows].tolist() == truth
    stats = dataset.extra["languages"]
    assert stats["c"]["skipped"] == {"binary": 1, "mostly licence text": 1}
    assert stats["javascript"]["skipped"] == {"duplicate": 1}
    assert stats["c"]["used"] == 3 and stats["cpp"]["used"] == 1 and stats["python"]["used"] == 2
    assert dataset.extra["dropped_languages"]["go"] == 0


def test_spans_skip_the_first_tokens_and_end_before_special_tokens(tree, minilm_tokenizer):
    dataset = build_small(tree, minilm_tokenizer, skip_tokens=7)
    ex = dataset.examples
    assert set(ex.aggregation.tolist()) == {AGGREGATIONS.index("mean")}
    assert set(ex.skip.tolist()) == {7}
    assert set(ex.start.tolist()) == {0}
    for s, end in zip(ex.sequence, ex.end):
        tokens = dataset.tokens[s]
        # MiniLM adds [CLS] ... [SEP]: the span ends at the last real token, the skip counts [CLS].
        assert end == len(tokens) - 1
        assert tokens[0] == minilm_tokenizer.cls_token_id and tokens[end] == minilm_tokenizer.sep_token_id
        assert ex.start[0] + 7 < end
    assert all(len(t) <= 64 for t in dataset.tokens)


def test_default_skip_is_the_papers_50_tokens(tmp_path, minilm_tokenizer):
    root = tmp_path / "code"
    root.mkdir()
    for i in range(2):
        (root / f"a{i}.py").write_text(python_source(i) * 4)
        (root / f"b{i}.c").write_text(c_source(i) * 3)
    dataset = build_code_language([root], minilm_tokenizer, min_files=2, context_length=128)
    assert set(dataset.examples.skip.tolist()) == {50}
    assert dataset.builder["params"]["skip_tokens"] == 50
    assert all(end - 50 >= 32 for end in dataset.examples.end)  # min_tokens after the skip


def test_too_short_files_are_skipped(tree, minilm_tokenizer):
    # With MiniLM the Python fixtures are 42 tokens ([CLS] and [SEP] included), the others 55 or more.
    assert len(minilm_tokenizer(python_source(0))["input_ids"]) == 42
    with pytest.warns(UserWarning, match="dropped languages with fewer than 1 usable files: python"):
        dataset = build_small(tree, minilm_tokenizer, skip_tokens=30, min_tokens=12, context_length=128)
    assert "is_python" not in dataset.feature_names  # 41 - 30 = 11 tokens left: too short
    assert dataset.extra["languages"]["python"]["skipped"] == {"too short": 2}
    assert dataset.extra["dropped_languages"]["python"] == 0
    assert {"is_c", "is_cpp", "is_javascript"} <= set(dataset.feature_names)


def test_max_files_per_language_caps_and_is_deterministic(tmp_path, minilm_tokenizer):
    root = tmp_path / "many"
    root.mkdir()
    for i in range(6):
        (root / f"m{i}.py").write_text(python_source(i))
        (root / f"c{i}.c").write_text(c_source(i))
    params = {"min_files": 1, "skip_tokens": 5, "min_tokens": 3, "context_length": 64, "max_files_per_language": 3,
              "seed": 4}
    first = build_code_language([root], minilm_tokenizer, **params)
    again = build_code_language([root], minilm_tokenizer, **params)
    assert first.n_sequences == 6
    assert list(first.groups) == list(again.groups)
    assert first.content_hash() == again.content_hash()
    other = build_code_language([root], minilm_tokenizer, **{**params, "seed": 5})
    assert set(other.groups) != set(first.groups)


def test_saved_dataset_records_params_and_counts(tree, minilm_tokenizer, tmp_path):
    dataset = build_small(tree, minilm_tokenizer)
    dataset.save(tmp_path / "ds")
    loaded = load_dataset(tmp_path / "ds")
    assert loaded.builder["name"] == "code_language"
    assert loaded.builder["params"]["min_files"] == 1
    assert loaded.extra["languages"]["python"]["used"] == 2
    assert all(f["level"] == "sequence" for f in loaded.features)


def test_registry_builds_code_language(tree, minilm_tokenizer):
    dataset = build_collection("code-language", [str(tree)], minilm_tokenizer, min_files=1, skip_tokens=5,
                               min_tokens=3, context_length=64)
    assert "is_python" in dataset.feature_names


# --------------------------------------------------------------------------- bad input
def test_unknown_language_is_a_clear_error(tree, minilm_tokenizer):
    with pytest.raises(InputError, match="unknown language.*'cobol'.*known: python"):
        build_small(tree, minilm_tokenizer, languages=["python", "cobol"])


def test_no_files_found_is_a_clear_error(tmp_path, minilm_tokenizer):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("nothing here")
    with pytest.raises(InputError, match="no source files of the requested languages"):
        build_small(tmp_path / "empty", minilm_tokenizer)
    with pytest.raises(InputError, match="does not exist"):
        build_small(tmp_path / "missing", minilm_tokenizer)


def test_fewer_than_two_languages_is_a_clear_error(tree, minilm_tokenizer):
    with pytest.raises(InputError, match="min_files=5"):
        build_small(tree, minilm_tokenizer, min_files=5)
    with pytest.raises(InputError, match="at least two languages"):
        build_small(tree, minilm_tokenizer, languages=["python"])


def test_bad_parameters(tree, minilm_tokenizer):
    with pytest.raises(InputError, match="context_length"):
        build_small(tree, minilm_tokenizer, context_length=8)
    with pytest.raises(InputError, match="max_licence_share"):
        build_small(tree, minilm_tokenizer, max_licence_share=0)


def test_machine_sources_exist_and_start_with_the_stdlib():
    sources = machine_sources()
    assert sources[0] == sysconfig.get_paths()["stdlib"]
    assert all(Path(s).exists() for s in sources)
    assert set(LANGUAGES) >= {"python", "c", "cpp", "java", "javascript", "html", "xml", "go", "php"}
