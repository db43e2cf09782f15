"""Which of the suite's own processes is calling an internal service, and what
each may ask: the internal plane trusts no caller by default.

Every call between services carries the caller's identity and a credential,
an HMAC of the identity under the install's internal secret
(AUTOML_INTERNAL_SECRET, or a random key made once in the data folder: the
embedded single-machine setup). Storage, the runner and the notifier refuse
any call without a valid one (UNAUTHENTICATED), so that another container on
the same network (the S3 server, SQL Server, Dask workers) can neither read a
tenant's data nor mint keys. Then the rules below, in this one place:

- a tenant in the metadata is honoured only from the callers that act for
  tenants (the gateway, the runner, the notifier forwarding its publisher's
  tenant, the supervisor); from any other caller it is refused;
- "*" (every tenant) only from the gateway's supervisor and the notifier's
  webhook dispatcher and token lookup;
- API key management only from the gateway and the admin command.

Health checks and reflection stay open (probes, grpcurl's listing).

With AUTOML_INTERNAL_TLS_* set (certificates from scripts/make_certs.py), the
services also talk mutual TLS: each refuses a peer without a certificate of
the suite's CA, and a caller may claim only the identities its certificate's
common name holds (the gateway's: gateway, supervisor and the admin command
run in its container).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from automl.common import context, errors, keys
from automl.common.settings import Settings
from automl.common.tenants import ALL_TENANTS

IDENTITY_KEY = "x-automl-identity"
CREDENTIAL_KEY = "x-automl-credential"
SECRET_FILE = "internal.key"

GATEWAY = "gateway"
SUPERVISOR = "supervisor"
RUNNER = "runner"
NOTIFIER = "notifier"
ADMIN = "admin"
IDENTITIES = frozenset({GATEWAY, SUPERVISOR, RUNNER, NOTIFIER, ADMIN})

ACTS_FOR_TENANTS = frozenset({GATEWAY, SUPERVISOR, RUNNER, NOTIFIER})
ACTS_FOR_ALL_TENANTS = frozenset({SUPERVISOR, NOTIFIER})
# Identities a certificate's common name may claim.
CERTIFICATE_IDENTITIES = {
    GATEWAY: frozenset({GATEWAY, SUPERVISOR, ADMIN}),  # the admin command runs in the gateway's container
    RUNNER: frozenset({RUNNER}),
    NOTIFIER: frozenset({NOTIFIER}),
    ADMIN: frozenset({ADMIN}),
}
# Methods only some identities may call: (who, how an error names them).
RESTRICTED = {
    **{
        f"/automl.v1.Storage/{name}": (frozenset({GATEWAY, ADMIN}), "the gateway and the admin command")
        for name in ("CreateApiKey", "ListApiKeys", "RevokeApiKey", "LookupApiKey")
    },
    "/automl.v1.Storage/FailLostTrainings": (frozenset({SUPERVISOR}), "the gateway's supervisor"),
}


def internal_secret(settings: Settings) -> bytes:
    try:
        return keys.install_secret(settings.internal_secret, settings.data_dir, SECRET_FILE)
    except keys.KeyError_ as exc:
        raise errors.FailedPrecondition(str(exc)) from None


def mutual_tls(settings: Settings) -> bool:
    return bool(settings.internal_tls_ca_file)


def _tls_files(settings: Settings) -> tuple[bytes, bytes, bytes]:
    ca, key, cert = (
        Path(name).read_bytes()
        for name in (settings.internal_tls_ca_file, settings.internal_tls_key_file, settings.internal_tls_cert_file)
    )
    return ca, key, cert


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """An internal server's side of mutual TLS (a client certificate required), or None."""
    if not mutual_tls(settings):
        return None
    ca, key, cert = _tls_files(settings)
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)


def channel_credentials(settings: Settings) -> grpc.ChannelCredentials | None:
    """A caller's side of mutual TLS to an internal service, or None."""
    if not mutual_tls(settings):
        return None
    ca, key, cert = _tls_files(settings)
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


def credential(secret: bytes, identity: str) -> str:
    return hmac.new(secret, f"automl-identity:{identity}".encode(), hashlib.sha256).hexdigest()


@dataclass
class Credentials:
    """What a process sends with its calls to internal services; one identity
    per process, or another one for some of its calls (the supervisor)."""

    secret: bytes
    identity: str
    _made: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, settings: Settings, identity: str) -> Credentials:
        return cls(internal_secret(settings), identity)

    def metadata(self, identity: str = "") -> list[tuple[str, str]]:
        who = identity or self.identity
        if who not in self._made:
            self._made[who] = credential(self.secret, who)
        return [(IDENTITY_KEY, who), (CREDENTIAL_KEY, self._made[who])]


class Verifier:
    """An internal service's check of its callers: who they are, and whether
    they may make this call for this tenant."""

    def __init__(self, secret: bytes, certificates: bool = False) -> None:
        self._expected = {who: credential(secret, who).encode() for who in IDENTITIES}
        self.certificates = certificates

    @classmethod
    def of(cls, settings: Settings) -> Verifier:
        return cls(internal_secret(settings), mutual_tls(settings))

    def admit(self, metadata: Mapping[str, Any], method: str, auth_context: Mapping[str, Any] | None = None) -> str:
        """The caller's tenant ("" for none); Unauthenticated or PermissionDenied.
        `auth_context`: the call's (grpc's), holding the peer certificate's
        names under mutual TLS."""
        who = str(metadata.get(IDENTITY_KEY) or "")
        given = str(metadata.get(CREDENTIAL_KEY) or "").encode()
        expected = self._expected.get(who)
        if expected is None or not hmac.compare_digest(given, expected):
            raise errors.Unauthenticated(
                "this is an internal service of the suite: it answers only the suite's own services, with a "
                "valid x-automl-credential (call the gateway instead)"
            )
        if self.certificates:
            names = [n.decode() for n in (auth_context or {}).get("x509_common_name", [])]
            if not any(who in CERTIFICATE_IDENTITIES.get(name, ()) for name in names):
                raise errors.Unauthenticated(
                    f"the caller's certificate ({', '.join(names) or 'none'}) may not speak as the {who}"
                )
        restricted = RESTRICTED.get(method)
        if restricted is not None and who not in restricted[0]:
            raise errors.PermissionDenied(f"{method.rsplit('/', 1)[-1]} is only for {restricted[1]}")
        tenant = str(metadata.get(context.TENANT_KEY) or "")
        if tenant and who not in ACTS_FOR_TENANTS:
            raise errors.PermissionDenied(f"the {who} does not act for tenants: no {context.TENANT_KEY} from it")
        if tenant == ALL_TENANTS and who not in ACTS_FOR_ALL_TENANTS:
            raise errors.PermissionDenied(f'the {who} may not act for every tenant ("{ALL_TENANTS}")')
        return tenant
