"""A tiny project that cpk runs: its dependencies come from the store."""

import attrs
from rich.console import Console


@attrs.define
class Greeting:
    name: str

    def render(self) -> str:
        return f"hello, {self.name}, from an environment composed from the store"


def main() -> None:
    Console().print(f"[bold green]{Greeting('world').render()}[/bold green]")
