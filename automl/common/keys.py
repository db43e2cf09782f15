"""Secrets of an install: from a setting, or made once in the data folder
(the embedded single-machine setup) and shared by every process there."""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path

MIN_CHARS = 32


class KeyError_(ValueError):
    """A key file that cannot be used; the message names it."""


def install_secret(value: str, folder: Path, file_name: str) -> bytes:
    """`value` when set, else the key kept in folder/file_name, made on first
    use. Made atomically (a temporary file linked into place): processes that
    start together end up with one key, never with a half-written one."""
    if value:
        return value.encode()
    path = folder / file_name
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=folder, prefix=".key-")
        try:
            os.write(fd, secrets.token_hex(32).encode())
            os.fsync(fd)
            os.close(fd)
            os.chmod(temporary, 0o600)
            with contextlib.suppress(FileExistsError):  # another process made it first: use theirs
                os.link(temporary, path)
        finally:
            os.unlink(temporary)
    key = path.read_bytes().strip()
    if len(key) < MIN_CHARS:
        raise KeyError_(f"{path} holds no usable key (under {MIN_CHARS} characters): delete it to make a new one")
    return key
