"""Every code block of README.md and docs/*.md runs, as written, in the order of its document.

The blocks run in a scratch directory whose ``../shared/data/ud/en_ewt`` is a miniature of the real EWT
treebank (a few sentences of a few documents of each file, cut from the real files at test time), so the
commands are the documentation's own but the data is small. The few changes made to a block are listed in
:data:`SHRINK` (each must still apply, so none goes stale silently): they only narrow what the heaviest sweep
and the site cover. ``needle …`` lines run through the CLI's entry point in this process (the package under
test); other shell lines run in bash.

A block is skipped only when the line above it says ``<!-- doctest: skip: <why> -->``; such markers stay rare
and each gives its reason (checked below).
"""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SHARED_DATA

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
RUN = {"python", "bash"}
#: Languages of blocks that are not code (layouts, diagrams); every fence must name its language.
NOT_CODE = {"text"}
MARKER = re.compile(r"<!--\s*doctest:\s*skip:\s*(?P<why>.+?)\s*-->")
MAX_SKIPS = 3
#: (document, text in a block, replacement): the whole-treebank sweep narrowed to three features and two layers.
SHRINK = [
    ("README.md", "needle probe --cache runs/ewt-train-minilm --out runs/ewt-train.parquet --jobs 2",
     "needle probe --cache runs/ewt-train-minilm --out runs/ewt-train.parquet --jobs 1 "
     "--features pos:NOUN,pos:VERB,dep:nsubj --layers 0,3 --methods mean_diff,f_stat --bootstrap 200"),
    ("README.md", "--out runs/site   # static", "--out runs/site --max-k 2 --max-sequences 32   # static"),
    # The SAE: a small one on a few thousand tokens, and its sweep narrowed as the neurons' is.
    ("README.md", "--out runs/sae-minilm-L3   # UD", "--out runs/sae-minilm-L3 --max-tokens 3000 --steps 30 --expansion 2   # UD"),
    ("README.md", "needle probe --cache runs/ewt-train-sae --out runs/ewt-train-sae.parquet",
     "needle probe --cache runs/ewt-train-sae --out runs/ewt-train-sae.parquet --jobs 1 "
     "--features pos:NOUN,pos:VERB --methods mean_diff --bootstrap 200"),
    # Shards need a batch each: the miniature treebank fits in one batch of the default size.
    ("README.md", "--layers 0 --shard 0/2", "--layers 0 --shard 0/2 --batch-tokens 512"),
    ("README.md", "--layers 0 --shard 1/2", "--layers 0 --shard 1/2 --batch-tokens 512"),
    # The universal-neurons family: two one-layer members trained for two steps on needle's own toy sources.
    ("README.md", "needle toy train-seeds --out fam --seeds 5",
     f"needle toy train-seeds --out fam --seeds 2 --python {Path(__file__).resolve().parents[1] / 'src/needle/toy'} "
     "--no-ud --vocab-size 280 --hidden-size 16 --layers 1 --heads 2 --neurons 32 --context-length 16 "
     "--batch-size 2 --steps 2"),
]
EWT = SHARED_DATA / "ud" / "en_ewt"


def code_blocks(path: Path) -> list[dict]:
    """The fenced blocks of a Markdown file: ``{"lang", "code", "line", "skip"}`` (``skip``: the marker's reason)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        fence = re.match(r"^```(\S*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        start, lang = i, fence.group(1)
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        before = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        marker = MARKER.search(before)
        blocks.append({"lang": lang, "code": "\n".join(lines[start + 1:end]) + "\n", "line": start + 1,
                       "skip": marker.group("why") if marker else None})
        i = end + 1
    return blocks


def test_every_fence_names_its_language_and_skips_are_rare_and_justified():
    skips = []
    for path in DOCUMENTS:
        for block in code_blocks(path):
            assert block["lang"] in RUN | NOT_CODE, f"{path.name}:{block['line']}: fence language {block['lang']!r}"
            if block["skip"] is not None:
                assert block["lang"] in RUN, f"{path.name}:{block['line']}: a skip marker on a non-code block"
                assert len(block["skip"]) >= 30, f"{path.name}:{block['line']}: say why the block cannot run"
                skips.append(f"{path.name}:{block['line']}")
    assert len(skips) <= MAX_SKIPS, skips
    text = "\n".join(p.read_text(encoding="utf-8") for p in DOCUMENTS)
    assert len(MARKER.findall(text)) == len(skips)  # every marker sits right above a block


def _miniature(source: Path, target: Path, *, documents: int = 14, sentences: int = 9) -> None:
    """The first ``sentences`` sentences of ``documents`` documents spread over ``source``."""
    with gzip.open(source, "rt", encoding="utf-8") as handle:
        blocks = [b for b in handle.read().split("\n\n") if b.strip()]
    by_doc: dict[str, list[str]] = {}
    for block in blocks:
        sent_id = re.search(r"^# sent_id = (\S+)", block, re.M).group(1)
        by_doc.setdefault(sent_id.rsplit("-", 1)[0], []).append(block)
    names = list(by_doc)
    step = max(1, len(names) // documents)
    chosen = [by_doc[n][:sentences] for n in names[::step][:documents]]
    target.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(target, "wt", encoding="utf-8") as handle:
        handle.write("\n\n".join(b for doc in chosen for b in doc) + "\n\n")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    if not EWT.is_dir():
        pytest.skip(f"the shared EWT treebank is not at {EWT}")
    root = tmp_path_factory.mktemp("docs")
    for split in ("train", "dev"):
        name = f"en_ewt-ud-{split}.conllu.gz"
        _miniature(EWT / name, root / "shared" / "data" / "ud" / "en_ewt" / name)
    work = root / "work"
    (work / ".venv" / "bin").mkdir(parents=True)
    bin_dir = root / "bin"
    bin_dir.mkdir()
    (bin_dir / "needle").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m needle.cli "$@"\n')
    (bin_dir / "needle").chmod(0o755)
    (work / ".venv" / "bin" / "activate").write_text(f'export PATH="{bin_dir}:$PATH"\n')
    return work


def _environment(bin_dir: Path) -> dict:
    import needle

    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    src = str(Path(needle.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    # As if the reader had run `source .venv/bin/activate` once, in the README's first block.
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    return env


def _shrunk(path: Path, code: str) -> str:
    for document, old, new in SHRINK:
        if document == path.name and old in code:
            code = code.replace(old, new)
    return code


def _run_bash(code: str, work: Path, env: dict, where: str) -> None:
    """Run a shell block line by line: ``needle …`` through the CLI's own entry point in this process (what the
    console script calls; no interpreter start-up per command), anything else in bash."""
    import shlex

    from needle.cli import main

    for line in code.replace("\\\n", " ").splitlines():
        argv = shlex.split(line, comments=True)
        if not argv or argv[0] == "source":  # the activation is in env already
            continue
        if argv[0] != "needle":
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", line], cwd=work, env=env, capture_output=True,
                                  text=True, timeout=600)
            assert done.returncode == 0, f"{where}: {line}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            continue
        here, saved_argv, saved_env = os.getcwd(), sys.argv, dict(os.environ)
        os.chdir(work)
        os.environ.update(env)
        sys.argv = argv
        try:
            main()
            code_ = 0
        except SystemExit as exited:
            code_ = exited.code or 0
        finally:
            os.chdir(here)
            sys.argv = saved_argv
            os.environ.clear()
            os.environ.update(saved_env)
        assert code_ == 0, f"{where}: `{line.strip()}` exited with {code_}"


def _run_document(path: Path, work: Path, *, repeat_python: bool = False) -> None:
    """Run a document's blocks in order: bash in a shell, python in one namespace per document."""
    namespace: dict = {"__name__": f"doc_{path.stem}"}
    env = _environment(work.parent / "bin")
    here = os.getcwd()
    saved_env = dict(os.environ)
    for block in code_blocks(path):
        if block["lang"] not in RUN or block["skip"] is not None:
            continue
        where = f"{path.name}:{block['line']}"
        code = _shrunk(path, block["code"])
        started = time.perf_counter()
        if block["lang"] == "bash":
            _run_bash(code, work, env, where)
            print(f"{where}: {time.perf_counter() - started:.1f} s")
            continue
        os.chdir(work)
        os.environ.update(env)
        try:
            for _ in range(2 if repeat_python else 1):
                exec(compile(code, where, "exec"), namespace)  # noqa: S102 (the documentation's own code)
        finally:
            os.chdir(here)
            os.environ.clear()
            os.environ.update(saved_env)
        print(f"{where}: {time.perf_counter() - started:.1f} s")
        repeat_python = False  # only the first Python block is the one a user reruns


def test_shrink_edits_still_apply():
    for document, old, _ in SHRINK:
        assert old in (REPO / document).read_text(encoding="utf-8"), f"{document} no longer has: {old}"


@pytest.mark.slow
def test_readme_and_docs_run(workdir):
    # The README first (the docs continue from its outputs); its Python example twice: a second run must work.
    _run_document(REPO / "README.md", workdir, repeat_python=True)
    for path in DOCUMENTS[1:]:
        _run_document(path, workdir)
    for made in ("runs/ewt-train.parquet", "runs/ewt-train.html", "runs/site/index.html", "runs/ewt-dev.parquet",
                 "ds/manifest.json"):
        assert (workdir / made).exists(), made
