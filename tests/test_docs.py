"""The docs: README.md is a short guide, docs/ holds the rest, and what contract states is generated.

- The tensor tables (docs/serving.md) and the limits table (docs/limits-and-errors.md) are what
  scripts/contract_docs.py writes from `contract`: a change to contract that the docs do not follow
  fails here, with the diff.
- Every relative link in README.md and docs/*.md reaches a file (and, for a heading anchor in a
  Markdown file, that heading), so moving text between files cannot leave a dead link.
- README.md stays a guide: at most README_MAX_LINES lines.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
README_MAX_LINES = 180
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _contract_docs():
    spec = importlib.util.spec_from_file_location("contract_docs", ROOT / "scripts" / "contract_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generated_sections_are_what_contract_states():
    script = _contract_docs()
    assert set(script.SECTIONS) == {"docs/serving.md", "docs/limits-and-errors.md", "docs/export.md"}
    for path, (current, wanted) in script.generated().items():
        assert current == wanted, f"{path} differs from contract: run .venv/bin/python scripts/contract_docs.py"


def test_the_generated_sections_name_every_tensor_and_limit():
    import dataclasses

    import contract

    serving = (ROOT / "docs" / "serving.md").read_text()
    for spec in (*contract.TTS_INPUTS, *contract.TTS_OUTPUTS, *contract.VOCODER_INPUTS):
        assert f"| `{spec.name}` | {spec.dtype} |" in serving, spec.name
    limits = (ROOT / "docs" / "limits-and-errors.md").read_text()
    for field in dataclasses.fields(contract.Limits):
        assert f"| `{field.name}` |" in limits, field.name
    from contract.parameters import TtsParameters, flag_of

    export = (ROOT / "docs" / "export.md").read_text()
    for field in dataclasses.fields(TtsParameters):
        if field.metadata["cli"]:
            assert f"| `{flag_of(field.name)}` | `{field.name}` |" in export, field.name


def test_check_exits_1_with_a_diff_when_the_docs_differ(tmp_path, monkeypatch, capsys):
    script = _contract_docs()
    for path in script.SECTIONS:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text((ROOT / path).read_text())
    stale = tmp_path / "docs" / "serving.md"
    stale.write_text(stale.read_text().replace("| `nfe_step` | INT32 |", "| `nfe_step` | INT64 |"))
    monkeypatch.setattr(script, "ROOT", tmp_path)

    assert script.main(["--check"]) == 1
    out = capsys.readouterr()
    assert "-| `nfe_step` | INT64 |" in out.out and "+| `nfe_step` | INT32 |" in out.out, out.out
    assert "docs/limits-and-errors.md" not in out.out  # only the file that differs
    assert "scripts/contract_docs.py" in out.err
    assert script.main([]) == 0  # rewrites it
    assert script.main(["--check"]) == 0
    assert stale.read_text() == (ROOT / "docs" / "serving.md").read_text()


def test_check_passes_on_the_repository_from_the_command_line():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "contract_docs.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert (proc.returncode, proc.stdout) == (0, ""), proc.stdout + proc.stderr


def test_a_missing_marker_is_an_error_not_a_silent_pass():
    script = _contract_docs()
    with pytest.raises(SystemExit, match="expected one"):
        script.render("no markers here\n", {"tensors": script.tensors_section}, "docs/serving.md")


_FENCE = re.compile(r"^```.*?^```", re.M | re.S)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped (but - and _), spaces to hyphens."""
    out = set()
    for line in _FENCE.sub("", markdown).splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


def _links(markdown: str) -> list[str]:
    return _LINK.findall(_CODE.sub("", _FENCE.sub("", markdown)))


@pytest.mark.parametrize("doc", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_every_relative_link_reaches_a_file(doc):
    text = doc.read_text()
    links = _links(text)
    assert links or doc.name == "benchmarks.md", f"{doc.name} links nowhere: its navigation line is gone"
    broken = []
    for link in links:
        if re.match(r"[a-z][a-z0-9+.-]*:", link):  # https:, mailto:
            continue
        target, _, anchor = link.partition("#")
        path = (doc.parent / target).resolve() if target else doc
        if not path.exists():
            broken.append(f"{link} (no file {path})")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path.read_text()):
            broken.append(f"{link} (no heading '{anchor}' in {path.name})")
    assert not broken, f"{doc.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_link_checker_sees_links_and_skips_code():
    text = "[a](docs/x.md) `[b](nope.md)`\n```\n[c](nope.md)\n```\n[d](https://example.com)"
    assert _links(text) == ["docs/x.md", "https://example.com"]
    assert _anchors("## The `f5_tts` model contract\n# Limits and errors") == {
        "the-f5_tts-model-contract",
        "limits-and-errors",
    }


def test_the_readme_is_a_short_guide_that_links_every_doc():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= README_MAX_LINES
    for doc in sorted((ROOT / "docs").glob("*.md")):
        assert f"(docs/{doc.name})" in readme, f"README.md does not link docs/{doc.name}"
    for command in ["make demo", "make test", "make setup"]:
        assert command in readme
