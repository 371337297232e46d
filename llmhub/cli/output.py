"""What every command module shares: the two consoles and the settings of this process."""

from rich.console import Console

from llmhub.config import Settings, load_settings

# Progress and messages go to stderr; results (tables, JSON) to stdout.
console = Console(stderr=True)
out = Console()


def hub_settings() -> Settings:
    """The hub settings of this process (environment and defaults)."""
    return load_settings()
