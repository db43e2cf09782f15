"""Model files only this suite's runners wrote: each is sealed with an HMAC
(SHA-256, the runners' shared key) when it is written, and its seal is
checked, before a single byte is unpickled, by the process that unpickles it.

storage's sha256 proves only that the bytes are those storage recorded; who
can write storage could record a pickle of their own. The seal proves that a
runner holding the key wrote them. A sealed file is

    MAGIC (8 bytes) | HMAC-SHA256(key, MAGIC | payload) (32 bytes) | payload (joblib)

The key comes from AUTOML_RUNNER_MODEL_KEY, or, when it is empty, from a
random key kept in <data dir>/runner-model.key, made on first use (the
embedded single-machine setup): runners that share models need the same key.
"""

from __future__ import annotations

import hashlib
import hmac
import shutil
from pathlib import Path
from typing import BinaryIO

from automl.common import errors, keys
from automl.common.settings import Settings

MAGIC = b"AUTOMLM1"
MAC_BYTES = 32
HEADER_BYTES = len(MAGIC) + MAC_BYTES
KEY_FILE = "runner-model.key"
_CHUNK = 1 << 20


def model_key(settings: Settings) -> bytes:
    """The key from the settings, or the install's own (made once)."""
    try:
        return keys.install_secret(settings.runner_model_key, settings.data_dir, KEY_FILE)
    except keys.KeyError_ as exc:
        raise errors.FailedPrecondition(str(exc)) from None


def _mac(key: bytes, stream: BinaryIO) -> bytes:
    digest = hmac.new(key, MAGIC, hashlib.sha256)
    while chunk := stream.read(_CHUNK):
        digest.update(chunk)
    return digest.digest()


def seal(path: Path, key: bytes) -> None:
    """Turn a model file (joblib) into a sealed one, in place."""
    sealed = path.with_name(path.name + ".sealed")
    with path.open("rb") as source:
        mac = _mac(key, source)
        source.seek(0)
        with sealed.open("wb") as sink:
            sink.write(MAGIC + mac)
            shutil.copyfileobj(source, sink, _CHUNK)
    sealed.replace(path)


def open_sealed(path: Path, key: bytes) -> BinaryIO:
    """The file, positioned at its payload, once its seal checks out;
    FailedPrecondition otherwise. The caller unpickles from what it got,
    the very bytes that were checked (the file is not opened twice)."""
    stream = path.open("rb")
    try:
        header = stream.read(HEADER_BYTES)
        if len(header) < HEADER_BYTES or not header.startswith(MAGIC):
            raise errors.FailedPrecondition(
                "the model file carries no runner seal (trained before model files were sealed, or not written "
                "by a runner): refusing to load it; train the result again"
            )
        if not hmac.compare_digest(header[len(MAGIC) :], _mac(key, stream)):
            raise errors.FailedPrecondition(
                "the model file's seal does not match this runner's key (AUTOML_RUNNER_MODEL_KEY): refusing to "
                "load it; train the result again, or give every runner the same key"
            )
        stream.seek(HEADER_BYTES)
        return stream
    except BaseException:
        stream.close()
        raise
