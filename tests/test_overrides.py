"""The file and the flags are checked by one path (issue 32): a flag's value is merged into the file's
settings and read by the file's own parser, so a flag gives the spec that writing its value in the file
gives, and a bad value is refused with the file's rule, named by the flag."""

from __future__ import annotations

import copy

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from popplast.errors import SpecError
from popplast.spec.search import SearchSpec
from tests.helpers import TINY_SPEC

FILE = yaml.safe_load(TINY_SPEC)


def _spec(data: dict) -> SearchSpec:
    return SearchSpec.from_dict(copy.deepcopy(data), "tiny.yaml")


@given(
    population=st.none() | st.integers(2, 40),
    generations=st.none() | st.integers(1, 9),
    seed=st.none() | st.integers(0, 2**31),
    epochs=st.none() | st.integers(1, 5),
    image_size=st.none() | st.integers(4, 64),
    method=st.sampled_from([None, "ga", "gensoup", "tpe", "random", "pbt"]),
    schedule=st.sampled_from([None, "generational", "async"]),
    stopper=st.sampled_from([None, "none", "asha", "median"]),
)
def test_a_flag_gives_the_spec_its_value_written_in_the_file_gives(
    population, generations, seed, epochs, image_size, method, schedule, stopper
):
    flags = dict(
        population=population,
        generations=generations,
        seed=seed,
        epochs=epochs,
        image_size=image_size,
        method=method,
        schedule=schedule,
        stopper=stopper,
    )
    written = _spec(FILE).to_dict()  # every default written out: the flags say what the search trains at
    for key in ("population", "generations", "seed", "method", "schedule"):
        if flags[key] is not None:
            written["strategy"][key] = flags[key]
    for key in ("epochs", "image_size"):
        if flags[key] is not None:
            written["fidelity"][key] = flags[key]
    if stopper is not None:
        written["stopper"] = stopper
    try:
        expected: SearchSpec | str = _spec(written)
    except SpecError as e:
        expected = e.expected
    try:
        got: SearchSpec | str = _spec(FILE).with_overrides(**flags)
    except SpecError as e:
        assert e.source == "the command line" and e.key.startswith("--")
        got = e.expected.split(" (strategy.")[0].split(" (stopper")[0]
    assert got == expected


@pytest.mark.parametrize(
    "flags, message",
    [
        ({"generations": 0}, "Invalid option --generations: expected an integer >= 1, got 0."),
        ({"schedule": "sometimes"}, "Invalid option --schedule: expected one of generational, async, got str"),
        ({"method": "tpe", "schedule": "async"}, "Invalid option --schedule: asynchronous evolution is implemented"),
        ({"population": 5, "method": "openai"}, "Invalid option --population: openai samples antithetic pairs"),
        ({"method": "nosuch"}, "Invalid option --method: expected one of ga, gensoup"),
        ({"stopper": "sha"}, "Invalid option --stopper: expected one of"),
    ],
)
def test_a_bad_flag_is_refused_by_the_files_rule_and_named_by_the_flag(flags, message):
    with pytest.raises(SpecError) as caught:
        _spec(FILE).with_overrides(**flags)
    assert str(caught.value).startswith(message)


def test_a_flag_that_makes_a_file_setting_wrong_names_the_flag_and_the_key():
    openai = copy.deepcopy(FILE)
    openai["strategy"].update(method="openai", sigma=0.1)
    with pytest.raises(SpecError) as caught:
        _spec(openai).with_overrides(method="ga")
    assert str(caught.value) == (
        "Invalid option --method: sigma is a setting of elitist, openai, snes; this search's method is ga. "
        "(strategy.sigma in tiny.yaml)"
    )


def test_a_schedule_flag_takes_what_only_the_other_schedule_had_away():
    islands = copy.deepcopy(FILE)
    islands["strategy"].update(schedule="async", islands=2, replacement="worst")
    spec = _spec(islands).with_overrides(schedule="generational")
    assert (spec.strategy.schedule, spec.strategy.islands, spec.strategy.replacement) == ("generational", 1, "aging")


def test_a_stopper_flag_keeps_the_files_stopper_settings_even_under_rule_none():
    quiet = copy.deepcopy(FILE)
    quiet["stopper"] = {"rule": "none", "min_steps": 1, "reduction_factor": 4}
    for flags in ({"stopper": "asha"}, {"method": "ga+asha"}):
        stopper = _spec(quiet).with_overrides(**flags).stopper
        assert (stopper.rule, stopper.reduction_factor) == ("asha", 4)
