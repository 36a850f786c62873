"""docs/: the configuration reference is the schema's, and every document, section, line
and id that the code, the README and the job files cite exists."""

import copy
import os
import re
import sys

import pytest

from nigt_hpc import config, docgen
from tests.conftest import ROOT

DOCS = os.path.join(ROOT, "docs")
REGENERATE = "python -m nigt_hpc.docgen > docs/CONFIG.md"


def _read(*parts) -> str:
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as fh:
        return fh.read()


# ------------------------------------------------------------------ the config reference


def test_config_reference_is_generated_from_the_schema():
    if docgen.config_markdown() != _read("docs", "CONFIG.md"):
        pytest.fail("docs/CONFIG.md no longer matches SCHEMA in nigt_hpc/config.py; "
                    f"regenerate it with: {REGENERATE}")


def test_every_config_key_has_a_meaning():
    missing = [f"{s}.{k}" for s, keys in config.SCHEMA.items() for k, f in keys.items()
               if not docgen.meaning(s, k, f)]
    assert not missing, (f"config keys without help: {missing}; give each Field a help= "
                         f"in nigt_hpc/config.py, then {REGENERATE}")


def test_the_defaults_block_is_the_defaults():
    text = _read("docs", "CONFIG.md")
    block = text.split("```toml\n", 1)[1].split("```", 1)[0]
    assert config.tomllib.loads(block) == config.defaults()


def test_a_new_schema_key_changes_the_reference():
    # what the drift test relies on: a key added to the schema shows up in the text
    schema = copy.deepcopy(config.SCHEMA)
    schema["run"]["new_limit"] = config.Field(3, "int", ge=1, help="a new key")
    text = docgen.config_markdown(schema)
    assert "| `run.new_limit` | int | `3` | ≥ 1 | a new key |" in text
    assert text != docgen.config_markdown()


# ------------------------------------------------------------------ citations

SCANNED = ["nigt_hpc", "kernels", "jobs", "tests", "docs", "README.md", "setup.py",
           os.path.join(".ci", "run")]
SUFFIXES = (".py", ".md", ".toml", ".sh", ".sbatch", ".pbs")
NAMES = "ALGORITHMS|PITFALLS|INTERFACE|DESIGN|BENCHMARKS|ARCHITECTURE|CONFIG"

DOC_FILE = re.compile(rf"docs/([A-Za-z_]+\.md)|\b({NAMES})\.md\b")
ALGO_SECTION = re.compile(
    r"\bALGORITHMS(?:\.md)?,?\s+(?:sections?\s+|§\s*)(\d+b?)(?:\s*[-–]\s*§?(\d+b?))?"
    r"(?:\s+lines?\s+(\d+)(?:\s*[-–]\s*(\d+))?)?")
PITFALL_ID = re.compile(r"\bPITFALLS(?:\.md)?,?\s+([A-Z]\d+(?:\s*/\s*[A-Z]?\d+)*)")
TARGET_ID = re.compile(r"\b([TL]\d+) in (?:docs/)?BENCHMARKS\.md")


def _files():
    for entry in SCANNED:
        path = os.path.join(ROOT, entry)
        if os.path.isfile(path):
            yield path
            continue
        for folder, dirs, names in os.walk(path):
            dirs[:] = [d for d in dirs if not d.startswith((".", "__"))]
            for name in names:
                if name.endswith(SUFFIXES) and name != "test_docs.py":
                    yield os.path.join(folder, name)


def _where(path: str, text: str, m: re.Match) -> str:
    return f"{os.path.relpath(path, ROOT)}:{text.count(chr(10), 0, m.start()) + 1}"


def _sections(doc: str) -> dict[str, str]:
    """Return §id -> the text of that section of docs/ALGORITHMS.md."""
    parts = re.split(r"^## §(\w+) .*$", doc, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def _numbered_lines(section: str) -> set[int]:
    """Return the line numbers of the pseudocode blocks in one section."""
    out = set()
    for block in re.findall(r"^```\n(.*?)^```", section, flags=re.M | re.S):
        out |= {int(n) for n in re.findall(r"^\s*(\d+)\s", block, flags=re.M)}
    return out


def _citations():
    """Yield (where, problem-or-None) for every citation of a project document."""
    algo = _sections(_read("docs", "ALGORITHMS.md"))
    pitfalls = set(re.findall(r"^### ([A-Z]\d+)\.", _read("docs", "PITFALLS.md"), re.M))
    targets = set(re.findall(r"^\| ([TL]\d+) \|", _read("docs", "BENCHMARKS.md"), re.M))
    for path in _files():
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        for m in DOC_FILE.finditer(text):
            name = m.group(1) or f"{m.group(2)}.md"
            ok = os.path.isfile(os.path.join(DOCS, name))
            yield _where(path, text, m), None if ok else f"docs/{name} does not exist"
        for m in ALGO_SECTION.finditer(text):
            first, last, line0, line1 = m.groups()
            for sec in {first, last} - {None}:
                if sec not in algo:
                    yield _where(path, text, m), f"docs/ALGORITHMS.md has no §{sec}"
            for line in {line0, line1} - {None}:
                if int(line) not in _numbered_lines(algo.get(first, "")):
                    yield _where(path, text, m), f"docs/ALGORITHMS.md §{first} has no line {line}"
        for m in PITFALL_ID.finditer(text):
            letter = m.group(1)[0]
            for part in re.split(r"\s*/\s*", m.group(1)):
                pid = part if part[0].isalpha() else letter + part
                if pid not in pitfalls:
                    yield _where(path, text, m), f"docs/PITFALLS.md has no {pid}"
        for m in TARGET_ID.finditer(text):
            if m.group(1) not in targets:
                yield _where(path, text, m), f"docs/BENCHMARKS.md has no target {m.group(1)}"


def test_every_cited_document_section_and_id_exists():
    found = list(_citations())
    bad = [f"{where}: {problem}" for where, problem in found if problem]
    assert not bad, "\n".join(bad)
    assert len(found) > 30  # the scan sees the citations (README, kernels, jobs, docs)


def test_the_citation_check_catches_a_missing_section_and_id(tmp_path, monkeypatch):
    bad = tmp_path / "cites.py"
    bad.write_text('"""See ALGORITHMS section 9, PITFALLS N1/N99, docs/NOPE.md and\n'
                   'docs/ALGORITHMS.md §2 line 42."""\n')
    monkeypatch.setattr(sys.modules[__name__], "SCANNED", [str(bad)])
    problems = sorted(p for _, p in _citations() if p)
    assert problems == ["docs/ALGORITHMS.md has no §9", "docs/ALGORITHMS.md §2 has no line 42",
                        "docs/NOPE.md does not exist", "docs/PITFALLS.md has no N99"]
