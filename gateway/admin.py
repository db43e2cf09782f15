"""Administration of the gateway's API keys, talking to the storage service.

    python -m gateway.admin keys create --tenant acme --name "CI pipeline"
    python -m gateway.admin keys list
    python -m gateway.admin keys revoke apiKeys/<id>

The key is printed once, at creation; storage keeps only its SHA-256. Storage
is found with the suite's settings (AUTOML_STORAGE_TARGET / _PORT).
"""

from __future__ import annotations

import argparse
import json
import sys

import grpc
from google.protobuf import json_format

from automl.common import identity, status
from automl.common.channels import blocking_channel
from automl.common.settings import Settings, SettingsError
from automl.v1 import storage_service_pb2 as pb
from automl.v1 import storage_service_pb2_grpc
from gateway.auth import key_sha256, new_key

TIMEOUT = 10.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gateway.admin", description="Manage the gateway's API keys.")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    groups = parser.add_subparsers(dest="group", required=True)
    keys = groups.add_parser("keys", help="API keys").add_subparsers(dest="command", required=True)
    create = keys.add_parser("create", help="create a key for a tenant and print it (once)")
    create.add_argument("--tenant", required=True, help="tenant the key acts for (letters, digits, '_', '.', '-')")
    create.add_argument("--name", default="", help="a label to recognise the key by")
    keys.add_parser("list", help="list every key (never the keys themselves)")
    revoke = keys.add_parser("revoke", help="revoke a key: calls with it fail from now on")
    revoke.add_argument("name", help="apiKeys/<id>, as printed by create or list")
    return parser


def _row(key: pb.ApiKey) -> dict[str, object]:
    return json_format.MessageToDict(key, preserving_proto_field_name=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    credentials = identity.Credentials.of(settings, identity.ADMIN)
    tls = identity.channel_credentials(settings)
    with blocking_channel(settings.storage_address, credentials, tls=tls) as channel:
        storage = storage_service_pb2_grpc.StorageStub(channel)
        try:
            if args.command == "create":
                key = new_key()
                request = pb.CreateApiKeyRequest(
                    api_key=pb.ApiKey(tenant=args.tenant, display_name=args.name, prefix=key[:10]),
                    key_sha256=key_sha256(key),
                )
                created = storage.CreateApiKey(request, timeout=TIMEOUT)
                if args.json:
                    print(json.dumps({**_row(created), "key": key}))
                else:
                    print(f"{created.name} for tenant {created.tenant}\n{key}\n(store it now: it is not shown again)")
            elif args.command == "list":
                keys: list[pb.ApiKey] = []
                token = ""
                while True:
                    page = storage.ListApiKeys(pb.ListApiKeysRequest(page_size=1000, page_token=token), timeout=TIMEOUT)
                    keys += page.api_keys
                    token = page.next_page_token
                    if not token:
                        break
                if args.json:
                    print(json.dumps([_row(k) for k in keys]))
                for k in [] if args.json else keys:
                    state = "revoked" if k.HasField("revoke_time") else "active"
                    print(f"{k.name}\t{k.tenant}\t{k.prefix}...\t{state}\t{k.display_name}")
            else:
                revoked = storage.RevokeApiKey(pb.RevokeApiKeyRequest(name=args.name), timeout=TIMEOUT)
                print(json.dumps(_row(revoked)) if args.json else f"{revoked.name} revoked")
        except grpc.RpcError as exc:
            error = status.from_rpc_error(exc)  # type: ignore[arg-type]  # a blocking call's error is its grpc.Call
            print(f"error: {status.code_of(error).name}: {error.message}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
