"""The folder of published repositories the citation tests read: every pinned commit is there, and a
folder that lacks one fails those tests instead of skipping them."""

from __future__ import annotations

import pytest

import upstream
from primekit.eval import protocols


def test_exported_tree_is_the_pinned_commit(tmp_path, monkeypatch):
    if not upstream.UPSTREAM.is_dir():
        pytest.skip(f"no folder of published repositories at {upstream.UPSTREAM}")
    from primekit.eval.upstream import export_tree

    monkeypatch.setenv("PRIMEKIT_CACHE", str(tmp_path))
    folder = export_tree("PRIME-RL/PRIME", ("eval/system_prompt.md",))
    assert (folder / "eval/system_prompt.md").read_text() == upstream.upstream_file(
        "PRIME-RL/PRIME", "eval/system_prompt.md", upstream.PINNED["PRIME-RL/PRIME"])
    assert export_tree("PRIME-RL/PRIME", ("eval/system_prompt.md",)) == folder  # exported once


def test_pinned_commits_are_the_ones_primekit_cites():
    assert upstream.PINNED["PRIME-RL/PRIME"] == protocols.PRIME_COMMIT
    assert upstream.PINNED["QwenLM/Qwen2.5-Math"] == protocols.QWEN_COMMIT
    from test_prm_cli import IMPLICITPRM_COMMIT
    assert upstream.PINNED["PRIME-RL/ImplicitPRM"] == IMPLICITPRM_COMMIT


@pytest.mark.parametrize("repo", sorted(upstream.PINNED))
def test_each_pinned_commit_is_in_the_upstream_folder(repo):
    if not upstream.UPSTREAM.is_dir():
        pytest.skip(f"no folder of published repositories at {upstream.UPSTREAM} (PRIMEKIT_UPSTREAM)")
    assert upstream.has_commit(repo, upstream.PINNED[repo]), f"{repo} lacks {upstream.PINNED[repo]}"
    # a file every one of them has, read at the commit
    assert upstream.require_upstream_file(repo, "README.md", upstream.PINNED[repo]).strip()


def test_a_folder_without_the_commit_fails_instead_of_skipping(tmp_path, monkeypatch):
    monkeypatch.setenv("PRIMEKIT_UPSTREAM", str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match="no copy of PRIME-RL/PRIME"):
        upstream.require_upstream_file("PRIME-RL/PRIME", "README.md", upstream.PINNED["PRIME-RL/PRIME"])
    # an empty repository stands in for a mirror fetched at another commit
    import subprocess
    subprocess.run(["git", "init", "--quiet", "--bare", str(tmp_path / "PRIME-RL+PRIME" / "repo")], check=True)
    with pytest.raises(pytest.fail.Exception, match="lacks the pinned commit"):
        upstream.require_upstream_file("PRIME-RL/PRIME", "README.md", upstream.PINNED["PRIME-RL/PRIME"])
    monkeypatch.setenv("PRIMEKIT_UPSTREAM", str(tmp_path / "absent"))
    with pytest.raises(pytest.skip.Exception):
        upstream.require_upstream_file("PRIME-RL/PRIME", "README.md", upstream.PINNED["PRIME-RL/PRIME"])


def test_a_missing_file_at_the_pinned_commit_fails():
    if not upstream.UPSTREAM.is_dir():
        pytest.skip(f"no folder of published repositories at {upstream.UPSTREAM}")
    with pytest.raises(pytest.fail.Exception, match="has no file"):
        upstream.require_upstream_file("PRIME-RL/PRIME", "no/such/file.py", upstream.PINNED["PRIME-RL/PRIME"])
