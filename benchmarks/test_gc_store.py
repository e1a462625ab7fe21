"""The gc benchmark at smoke size: after three code versions and gc, the store holds what one
build of the same uploads holds. Its figures are measured by hand (docs/performance.md), never
asserted here."""

from benchmarks.gc_store import run


def test_gc_leaves_the_store_of_one_build(tmp_path):
    figures = run(participants=2, workdir=tmp_path)
    (before, _), (after, after_bytes), (once, once_bytes) = figures["before"], figures["after"], figures["built_once"]
    assert before > after == once
    assert abs(after_bytes - once_bytes) < 0.01 * once_bytes  # the manifests name their packs by a per-writer token
