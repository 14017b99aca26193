"""Text bundled with flax-embed."""

from importlib import resources

__all__ = ["sample_text"]


def sample_text() -> str:
    """A short story written for this project (1,053 GPT-2 tokens), for demos and tests."""
    return resources.files("flax_embed.data").joinpath("sample.txt").read_text("utf-8")
