"""The registry commands a person manages revisions with: models NAME, show, tag, delete, gc."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from fashion.cli.registry import (
    delete_command,
    gc_command,
    models_command,
    show_command,
    tag_command,
)
from fashion.errors import ModelNotFoundError
from fashion.registry import LocalRegistry, save_bundle
from tests.tiny_model import train_briefly

NAME = "team/a-rather-long-model-name-for-an-eighty-column-table"


@pytest.fixture
def published(tiny_model, tmp_path):
    registry = LocalRegistry()
    first = registry.publish(save_bundle(tiny_model, tmp_path / "v1"), NAME, tag="v1")
    train_briefly(tiny_model, seed=3)
    second = registry.publish(save_bundle(tiny_model, tmp_path / "v2", provenance={"parent": first.uri}),
                              NAME, message="retrained")
    return registry, first, second


def _run(command, *args):
    result = CliRunner().invoke(command, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_models_name_lists_revisions_and_nothing_is_truncated(published):
    _, first, second = published
    listing = _run(models_command)
    assert f"local://{NAME}" in listing and second.id in listing  # full ids and names, piped
    revisions = _run(models_command, NAME)
    assert first.uri in revisions and second.uri in revisions and "retrained" in revisions
    assert revisions.index(first.uri) < revisions.index(second.uri)


def test_show_resolves_a_bare_name_and_prints_revision_and_parent(published):
    _, first, second = published
    shown = _run(show_command, NAME, "--registry", "local")
    assert f"revision {second.uri} (tags: latest)" in shown and f"parent {first.uri}" in shown
    assert f"revision {first.uri}" in _run(show_command, f"{NAME}@v1")


def test_tag_delete_and_gc(published):
    registry, first, second = published
    assert "stable" in _run(tag_command, f"{NAME}@{first.id[:8]}", "stable")
    assert "tags removed: latest" in _run(delete_command, f"{NAME}@{second.id}", "--yes")
    assert [r.id for r in registry.list_revisions(NAME)] == [first.id]
    assert registry._read_tags(NAME)["latest"] == first.id  # latest moved to what is left
    assert not _run(gc_command).startswith("removed 0 ")  # the deleted revision's own files
    assert _run(gc_command).startswith("removed 0 ")  # nothing left to collect
    blobs = {p.name for p in registry.blobs.iterdir()}
    folder = registry.fetch(NAME)  # what is left still verifies after gc
    assert folder.is_dir() and blobs
    _run(delete_command, f"{NAME}@{first.id}", "--yes")
    assert "removed" in _run(gc_command)
    assert not any(registry.blobs.iterdir())
    with pytest.raises(ModelNotFoundError, match="FASHION_HOME"):
        registry.fetch(NAME)
