"""Each sampler's schedule matches its definition (index level, no model)."""

from __future__ import annotations

import types
from collections import Counter

import pytest

from fashion import get_component_info, hookimpl
from fashion.contract.manager import register_plugin, unregister_plugin
from fashion.errors import ConfigError, DuplicateComponentError, PluginError, UnknownComponentError
from fashion.training import Sampler, TrainConfig, get_sampler, list_samplers
from fashion.training.samplers import shard_step

SIZES = [50, 20, 7]
BS = 8
N_BATCHES = [7, 3, 1]  # ceil(n / 8)


def rows_of(schedule, dataset):
    return [i for step in schedule for d, rows in step if d == dataset for i in rows]


def test_builtin_samplers_are_registered():
    assert {"proportional", "round_robin", "temperature", "all_tasks"} <= set(list_samplers())


def test_proportional_uses_every_row_once_in_mixed_order():
    schedule = get_sampler("proportional").schedule(SIZES, BS, epoch=0, seed=1)
    assert len(schedule) == sum(N_BATCHES)
    assert all(len(step) == 1 for step in schedule)  # one dataset per batch
    for d, n in enumerate(SIZES):
        assert sorted(rows_of(schedule, d)) == list(range(n))  # each row exactly once
    assert Counter(step[0][0] for step in schedule) == {0: 7, 1: 3, 2: 1}  # ∝ size
    order = [step[0][0] for step in schedule]
    assert order != sorted(order)  # batches of all datasets shuffled together
    assert all(len(rows) <= BS for step in schedule for _, rows in step)


def test_schedules_are_deterministic_per_seed_and_epoch():
    sampler = get_sampler("proportional")
    a = sampler.schedule(SIZES, BS, epoch=3, seed=7)
    assert a == sampler.schedule(SIZES, BS, epoch=3, seed=7)
    assert a != sampler.schedule(SIZES, BS, epoch=4, seed=7)
    assert a != sampler.schedule(SIZES, BS, epoch=3, seed=8)


def test_round_robin_takes_turns_until_the_largest_is_exhausted():
    schedule = get_sampler("round_robin").schedule(SIZES, BS, epoch=0, seed=0)
    assert len(schedule) == len(SIZES) * max(N_BATCHES)
    assert [step[0][0] for step in schedule] == [0, 1, 2] * max(N_BATCHES)
    assert sorted(rows_of(schedule, 0)) == list(range(50))  # the largest: once
    small = [step[0][1] for step in schedule if step[0][0] == 1]
    passes = [sum(small[i : i + 3], []) for i in range(0, 6, 3)]  # 3 batches per pass
    for one_pass in passes:
        assert sorted(one_pass) == list(range(20))  # restarts: full reshuffled passes
    assert passes[0] != passes[1]


def test_temperature_probabilities_and_epoch_length():
    sampler = get_sampler("temperature", {"temperature": 2.0})
    p = sampler.probabilities(SIZES).tolist()
    expected = [n**0.5 for n in SIZES]
    assert p == pytest.approx([e / sum(expected) for e in expected])
    schedule = sampler.schedule(SIZES, BS, epoch=0, seed=0)
    assert len(schedule) == sum(N_BATCHES)
    assert all(len(step) == 1 for step in schedule)
    # over many epochs the draw frequencies follow p (fixed seeds: deterministic)
    draws = Counter(
        step[0][0] for e in range(200) for step in sampler.schedule(SIZES, BS, epoch=e, seed=0)
    )
    total = sum(draws.values())
    assert [draws[d] / total for d in range(3)] == pytest.approx(p, abs=0.02)
    uniform = get_sampler("temperature", {"temperature": 1000.0}).probabilities(SIZES).tolist()
    assert uniform == pytest.approx([1 / 3] * 3, abs=0.01)


def test_all_tasks_steps_hold_a_batch_of_every_dataset():
    schedule = get_sampler("all_tasks").schedule(SIZES, BS, epoch=0, seed=0)
    assert len(schedule) == max(N_BATCHES)
    assert all([d for d, _ in step] == [0, 1, 2] for step in schedule)
    assert sorted(rows_of(schedule, 0)) == list(range(50))
    assert Counter(rows_of(schedule, 2))[0] == 7  # the 7-row dataset restarts every step


def test_shard_step_splits_rows_between_processes():
    step = ((0, [5, 3, 9, 1, 4]), (1, [2]))
    a, b = shard_step(step, 0, 2), shard_step(step, 1, 2)
    assert sorted(a[0][1] + b[0][1]) == [1, 3, 4, 5, 9] and not set(a[0][1]) & set(b[0][1])
    assert a[1][1] == [2] and b[1][1] == [2]  # too few rows: repeated, never empty
    assert shard_step(step, 0, 1) == step


def test_register_samplers_hook_adds_a_sampler_the_config_accepts(tmp_path):
    class Sequential(Sampler):
        name = "test_sequential"

        def schedule(self, sizes, batch_size, *, epoch, seed):
            return [((d, list(range(i, min(n, i + batch_size)))),)
                    for d, n in enumerate(sizes) for i in range(0, n, batch_size)]

    plugin = types.ModuleType("sampler_plugin")
    plugin.register_samplers = hookimpl(lambda register: register(Sequential))
    datasets = [{"name": "a", "path": str(tmp_path / "a.csv")}]
    with pytest.raises(ConfigError, match="not registered; registered: all_tasks, proportional"):
        TrainConfig.parse({"datasets": datasets, "sampler": "test_sequential"})
    register_plugin(plugin, name="sampler_plugin")
    try:
        assert "test_sequential" in list_samplers()
        assert get_component_info("sampler", "test_sequential").plugin == "sampler_plugin"
        schedule = get_sampler("test_sequential").schedule([3], 2, epoch=0, seed=0)
        assert schedule == [((0, [0, 1]),), ((0, [2]),)]
        assert TrainConfig.parse({"datasets": datasets, "sampler": "test_sequential"}).sampler == "test_sequential"
        clash = types.ModuleType("clash_plugin")
        clash.register_samplers = hookimpl(
            lambda register: register(type("Other", (Sequential,), {"name": "test_sequential"}))
        )
        register_plugin(clash, name="clash_plugin")
        try:
            with pytest.raises(DuplicateComponentError, match="registered twice"):
                list_samplers()
        finally:
            unregister_plugin(clash)
    finally:
        unregister_plugin(plugin)
    assert "test_sequential" not in list_samplers()


def test_unknown_sampler_and_bad_options_are_refused():
    with pytest.raises(UnknownComponentError, match="proportional"):
        get_sampler("nope")
    with pytest.raises(ConfigError, match="temperature"):
        get_sampler("temperature", {"temperature": -1})
    with pytest.raises(ConfigError, match="at least one usable row"):
        get_sampler("proportional").schedule([3, 0], 2, epoch=0, seed=0)


def test_a_sampler_without_schedule_is_refused_at_registration():
    plugin = types.ModuleType("lazy_sampler_plugin")
    plugin.register_samplers = hookimpl(
        lambda register: register(type("Lazy", (Sampler,), {"name": "test_lazy"}))
    )
    register_plugin(plugin, name="lazy_sampler_plugin")
    try:
        with pytest.raises(PluginError, match=r"sampler 'test_lazy' .*without the required method\(s\) schedule\(\)"):
            list_samplers()
    finally:
        unregister_plugin(plugin)
