"""Two threads loading two models at once: both load, and so does the next (pipelines/loading.py LOADING_LOCK)."""

from __future__ import annotations

import functools
import pathlib
import threading

from pipelines import TextToImage
from pipelines.profiles import build_once
from pipelines.tiny_models import build_tiny_image_model


def test_two_models_loaded_at_once_both_load_and_later_loads_still_work(tmp_path: pathlib.Path) -> None:
    paths = [tmp_path / "first", tmp_path / "second"]
    for seed, path in enumerate(paths):
        build_tiny_image_model(path, seed=seed)
    start = threading.Barrier(len(paths))
    loaded: dict[int, TextToImage] = {}
    errors: list[BaseException] = []

    def load(index: int) -> None:
        start.wait()
        try:
            loaded[index] = TextToImage.from_pretrained(str(paths[index]))
        except BaseException as error:
            errors.append(error)

    for _ in range(3):  # the race, when the lock is gone, shows within a few rounds
        threads = [threading.Thread(target=load, args=(index,)) for index in range(len(paths))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    later = TextToImage.from_pretrained(str(paths[0]))

    assert errors == []
    assert sorted(loaded) == [0, 1]
    assert later([ "a kite" ], seeds=[1], width=64, height=64, steps=1).images[0].size == (64, 64)


def test_a_tiny_model_built_while_another_loads_is_built_whole(tmp_path: pathlib.Path) -> None:
    loaded_path = tmp_path / "loaded"
    build_tiny_image_model(loaded_path)
    errors: list[BaseException] = []

    def keep_loading() -> None:
        try:
            for _ in range(6):
                TextToImage.from_pretrained(str(loaded_path))
        except BaseException as error:
            errors.append(error)

    loading = threading.Thread(target=keep_loading)
    loading.start()
    built = [build_once(tmp_path / f"built-{n}", functools.partial(build_tiny_image_model, seed=n)) for n in range(6)]
    loading.join()

    assert errors == []
    for path in built:  # every one loads and renders: no weights were left on the meta device
        image = TextToImage.from_pretrained(str(path))(["a kite"], seeds=[1], width=64, height=64, steps=1).images[0]
        assert image.size == (64, 64)
