"""Webhook secrets encrypted at rest.

The notifier needs each webhook's secret in clear to sign deliveries, so it
cannot keep only a hash (as it does for tokens); storage keeps the secret
encrypted instead, with AES-256-GCM under a key only the notifier holds: a
copy of the database, or anyone who can read storage, learns no secret.

A sealed secret is "v1:" and the URL-safe base64 of nonce (12 bytes) |
ciphertext | tag (16 bytes): 99 characters for a 43-character secret, within
the 128 storage's column holds. Secrets written before sealing existed (no
"v1:": secrets are URL-safe base64, which has no ":") are read as they are,
and sealed when the notifier resumes their webhooks.

The key is derived from AUTOML_WEBHOOK_SECRET_KEY or, when it is empty, from
a random key kept in <data dir>/notifier-webhook.key, made on first start.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from automl.common import keys
from automl.common.settings import Settings

PREFIX = "v1:"
KEY_FILE = "notifier-webhook.key"
NONCE_BYTES = 12


class Unreadable(Exception):
    """A sealed secret that this key cannot open (another key, or altered)."""


def secret_key(settings: Settings) -> bytes:
    """The key material from the settings, or the install's own (made once,
    atomically: notifiers that start together on one data folder share it)."""
    return keys.install_secret(settings.webhook_secret_key, settings.data_dir, KEY_FILE)


class SecretBox:
    def __init__(self, key: bytes) -> None:
        # A key of its own for this one use, whatever the key material is.
        self._aead = AESGCM(hmac.new(key, b"automl webhook secrets v1", hashlib.sha256).digest())

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        return cls(secret_key(settings))

    @staticmethod
    def is_sealed(stored: str) -> bool:
        return stored.startswith(PREFIX)

    def seal(self, secret: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = nonce + self._aead.encrypt(nonce, secret.encode(), None)
        return PREFIX + base64.urlsafe_b64encode(sealed).decode("ascii")

    def open(self, stored: str) -> str:
        """The secret in clear; a secret stored before sealing existed as it is."""
        if not self.is_sealed(stored):
            return stored
        try:
            sealed = base64.urlsafe_b64decode(stored[len(PREFIX) :])
            return self._aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], None).decode()
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise Unreadable("the webhook secret does not open with this notifier's key") from exc
