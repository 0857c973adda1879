"""`onbeat bench crowd`'s pieces that run without a crowd (`onbeat.evaluation.bench_crowd`)."""
import pytest

pytest.importorskip("onnxruntime")


def test_the_batched_step_timing_feeds_the_shipped_badm_every_input_it_takes():
    # the shipped badm is styled: its graph also takes a music mask and a style id per dancer
    from onbeat.evaluation.bench_crowd import batched_step_costs
    costs = batched_step_costs([1, 3], repeats=1)
    assert list(costs) == [1, 3]
    for row in costs.values():
        assert row["onnxruntime cpu"] > 0
        assert all(ms > 0 for ms in row.values())
