"""The user's cache of srcaffe: `$XDG_CACHE_HOME/srcaffe`, else `~/.cache/srcaffe`, where files
that can be made again are kept between runs (datasets fetched, kernels compiled)."""
import os
from pathlib import Path


def folder(name):
    """The cache's subfolder `name` (not created here)."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "srcaffe" / name
