"""Small shared helpers: atomic file IO and environment / provenance information."""

from sppnet_exp.utils.env import git_info, host_info, versions
from sppnet_exp.utils.io import atomic_write_json, atomic_write_text, read_json

__all__ = ["atomic_write_json", "atomic_write_text", "git_info", "host_info", "read_json", "versions"]
