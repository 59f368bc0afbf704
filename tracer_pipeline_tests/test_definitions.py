"""The code location loads, and its asset graph reads left to right like the pipeline."""

import dagster as dg

from tracer_pipeline.definitions import FLYWHEEL_ASSETS, defs

PIPELINE_ORDER = [
    "raw_traces",
    "trace_embeddings",
    "surrogate_candidates",
    "parity_gate",
    "deployment",
    "interpretability_report",
]


def test_definitions_load_with_job_schedule_and_sensor():
    repository = defs.get_repository_def()
    assert repository.has_job("daily_refit")
    assert [s.name for s in defs.schedules] == ["daily_refit_schedule"]
    assert [s.name for s in defs.sensors] == ["landing_folder_sensor"]
    assert set(defs.resources) == {"storage", "tracking", "embedder"}


def test_asset_graph_is_the_pipeline_left_to_right():
    graph = defs.resolve_asset_graph()
    keys = [asset.key.to_user_string() for asset in FLYWHEEL_ASSETS]
    assert keys == PIPELINE_ORDER
    for upstream, downstream in zip(PIPELINE_ORDER, PIPELINE_ORDER[1:], strict=False):
        parents = {key.to_user_string() for key in graph.get(dg.AssetKey(downstream)).parent_keys}
        assert upstream in parents, f"{downstream} should depend on {upstream}"


def test_every_asset_is_daily_partitioned():
    graph = defs.resolve_asset_graph()
    for name in PIPELINE_ORDER:
        partitions = graph.get(dg.AssetKey(name)).partitions_def
        assert isinstance(partitions, dg.DailyPartitionsDefinition), name


def test_raw_traces_carries_the_gx_asset_check():
    graph = defs.resolve_asset_graph()
    checks = {key.name for key in graph.asset_check_keys}
    assert "traces_meet_suite" in checks
