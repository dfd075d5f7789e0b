"""The one registry behind every pluggable kind, and a contract every registered entry must meet."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from manifpt.errors import UnknownNameError
from manifpt.registry import Registry


def test_duplicates_are_errors_and_unknown_names_suggest_the_closest() -> None:
    reg: Registry[type] = Registry("widget")
    a = reg.register("Alpha")(type("A", (), {}))
    assert a.name == "alpha" and reg.get("ALPHA") is a and "alpha" in reg and reg.names() == ["alpha"]
    reg.register("alpha")(a)  # the same class again (a module reload) is no clash
    with pytest.raises(ValueError, match="widget 'alpha' is already registered"):
        reg.register("alpha")(type("B", (), {}))
    with pytest.raises(UnknownNameError, match="unknown widget 'alpah'; did you mean alpha"):
        reg.get("alpah")
    assert reg.create("alpha").__class__ is a


def test_modules_are_imported_on_first_lookup_only(monkeypatch: pytest.MonkeyPatch) -> None:
    reg: Registry[type] = Registry("gadget", ["some.gadgets"], attr=None)
    gadget = type("Gadget", (), {})
    seen: list[str] = []

    def fake_import(name: str) -> None:
        seen.append(name)
        reg.register("g")(gadget)

    monkeypatch.setattr("manifpt.registry.importlib.import_module", fake_import)
    assert seen == []  # nothing imported when the registry is made
    assert reg.get("g") is gadget and seen == ["some.gadgets"]
    reg.names()
    with pytest.raises(UnknownNameError):
        reg.get("h")
    assert seen == ["some.gadgets"] and not hasattr(gadget, "name")  # imported once; attr=None: entry untouched


# ---------------------------------------------------------------------------------------------- contracts


def _kinds() -> list[tuple[str, str]]:
    from manifpt.baselines import list_baselines
    from manifpt.experiments import STUDIES
    from manifpt.projection import list_projectors
    from manifpt.spaces import list_spaces
    from manifpt.zoo import list_families

    return ([("space", n) for n in list_spaces()] + [("baseline", n) for n in list_baselines()]
            + [("projection", n) for n in list_projectors()] + [("family", n) for n in list_families()]
            + [("study", n) for n in STUDIES.names()])


@pytest.mark.parametrize(("kind", "name"), _kinds())
def test_every_registered_entry_meets_its_contract(kind: str, name: str) -> None:
    if kind == "space":
        from manifpt.spaces import get_space
        from manifpt.spaces.base import Space

        sp = get_space(name)
        assert isinstance(sp, Space) and sp.name == name
        assert json.loads(json.dumps(sp.settings(), default=str)) is not None
        assert sp.cache_key() == get_space(name).cache_key()  # keys the caches: must be deterministic
        assert isinstance(type(sp).image_shaped, bool)
    elif kind == "baseline":
        from manifpt.baselines import get_baseline

        b = get_baseline(name, seed=3)
        assert b.name == name and b.get_params()["seed"] == 3 and clone(b).get_params() == b.get_params()
        assert len(b.paper) > 40 and b.deviations and all(isinstance(d, str) for d in b.deviations)
        assert not any(k.endswith("_") for k in vars(b))  # no fitted state before fit
        with pytest.raises(NotFittedError):
            b.predict(np.zeros((2, 16, 16, 3), np.uint8))
    elif kind == "projection":
        from manifpt.projection import Projector, get_projector

        p = get_projector(name)
        assert isinstance(p, Projector) and p.name == name and isinstance(p.k, int) and p.k >= 0
    elif kind == "family":
        from manifpt.zoo import FamilyOptions, ZooModel, get_family

        cls = get_family(name)
        assert issubclass(cls, ZooModel) and cls.family_key == name and issubclass(cls.Options, FamilyOptions)
    else:
        from manifpt.experiments import STUDIES

        fn = STUDIES[name]
        assert callable(fn) and fn.__doc__ and list(inspect.signature(fn).parameters) == ["ctx", "out"]


def _estimators() -> list[str]:
    from manifpt.baselines import list_baselines

    return ["attributor", *list_baselines()]


@pytest.mark.parametrize("name", _estimators())
def test_estimators_follow_the_scikit_learn_contract(name: str) -> None:
    """The attributor and every baseline: parameters in ``__init__`` only (``get_params``/``clone``
    round-trip), no fitted state before ``fit``, ``NotFittedError`` from every prediction before it."""
    from sklearn.base import BaseEstimator

    if name == "attributor":
        from manifpt.attribute import Attributor

        est, x = Attributor((3, 8, 8), epochs=2, seed=3), np.zeros((2, 3 * 8 * 8), np.float32)
        calls = [est.predict, est.predict_proba, est.transform]
    else:
        from manifpt.baselines import get_baseline

        est, x = get_baseline(name, seed=3), np.zeros((2, 16, 16, 3), np.uint8)
        calls = [est.predict, est.predict_proba] + ([est.features] if est.learned_features else [])
    assert isinstance(est, BaseEstimator) and est.get_params()["seed"] == 3
    twin = clone(est)
    assert twin is not est and twin.get_params() == est.get_params()
    assert not any(k.endswith("_") and not k.startswith("_") for k in vars(est))
    for call in calls:
        with pytest.raises(NotFittedError):
            call(x)


def test_one_attributor_config_everywhere_and_unknown_keys_are_errors(tmp_path) -> None:
    from pydantic import ValidationError

    from manifpt.attribute import Attributor, AttributorConfig
    from manifpt.compare import CompareConfig
    from manifpt.experiments.config import ExperimentConfig
    from manifpt.fit import FitConfig

    a = AttributorConfig(arch="mlp", lr=0.01, epochs=3)
    att = Attributor.from_config(a, None, seed=5, coords=True)
    assert (att.arch, att.lr, att.epochs, att.seed, att.coords) == ("mlp", 0.01, 3, 5, True)
    # the older flat layout (run.json of earlier runs, compare YAMLs) still reads, into `attributor`
    old = FitConfig(real="r", generated="g", arch="mlp", epochs=3, lr=0.01)
    assert old.attributor == a and "arch" not in old.model_dump()
    assert FitConfig(**old.model_dump()) == old
    with pytest.raises(ValueError, match="epochs given both"):
        CompareConfig(real="r", generated="g", epochs=3, attributor={"epochs": 4})
    ds = {"d": {"real": "fmnist", "zoo": "tiny"}}
    assert ExperimentConfig(name="x", datasets=ds, attributor={"lr": 0.01}).attributor.lr == 0.01
    for bad in ({"bogus": 1}, {"epochs": 0}, {"lr": -1.0}):  # an `lr` typo was once dropped without a word
        with pytest.raises(ValidationError):
            ExperimentConfig(name="x", datasets=ds, attributor=bad)
