import importlib.metadata

from cpk_demo import Greeting


def test_greeting_names_its_subject() -> None:
    assert "world" in Greeting("world").render()


def test_dependencies_come_from_the_lock() -> None:
    assert importlib.metadata.version("rich").split(".")[0] >= "13"
