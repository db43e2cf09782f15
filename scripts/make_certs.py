"""Make the certificates of mutual TLS between the suite's services: a CA, and
for each service (and the admin command) a key and a certificate signed by
it, whose common name is the service's identity.

    .venv/bin/python scripts/make_certs.py [FOLDER]      # default: certs/

writes FOLDER/ca.pem (the CA certificate; its key is not kept: no new
certificate can be signed later, make a new set instead), and
FOLDER/<name>.pem and FOLDER/<name>-key.pem for gateway, storage, runner,
notifier and admin. Each certificate names the service's compose host name,
localhost, 127.0.0.1 and ::1, and is valid for `--days` (default 825).
Existing files are kept unless --force. Then give each process its own three
files (docs/security.md, "The internal plane"):

    AUTOML_INTERNAL_TLS_CA_FILE=FOLDER/ca.pem
    AUTOML_INTERNAL_TLS_CERT_FILE=FOLDER/<name>.pem
    AUTOML_INTERNAL_TLS_KEY_FILE=FOLDER/<name>-key.pem
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NAMES = ("gateway", "storage", "runner", "notifier", "admin")


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str) -> x509.Name:
    organization = x509.NameAttribute(NameOID.ORGANIZATION_NAME, "automl suite")
    return x509.Name([organization, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make(folder: Path, days: int = 825, force: bool = False, readable_keys: bool = False) -> list[Path]:
    """Write the CA and every service's certificate into `folder`; the files
    written. Keys are the owner's only (0600), unless `readable_keys`: then
    0644 in a folder only the owner may enter (0700), for containers whose
    user is not the owner (compose mounts each file as a secret)."""
    if (folder / "ca.pem").exists() and not force:
        raise FileExistsError(f"{folder / 'ca.pem'} exists: use --force to make a new set (every file is replaced)")
    folder.mkdir(parents=True, exist_ok=True)
    if readable_keys:
        os.chmod(folder, 0o700)
    now = dt.datetime.now(dt.UTC)
    start, end = now - dt.timedelta(minutes=5), now + dt.timedelta(days=days)
    ca_key = _key()
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("automl suite internal CA"))
        .issuer_name(_name("automl suite internal CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    written = [folder / "ca.pem"]
    written[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for name in NAMES:
        key = _key()
        names: list[x509.GeneralName] = [
            x509.DNSName(name),
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ]
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            # Every service is a server to some and a client of others.
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        key_path = folder / f"{name}-key.pem"
        key_path.write_bytes(_pem_key(key))
        os.chmod(key_path, 0o644 if readable_keys else 0o600)
        (folder / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        written += [folder / f"{name}.pem", key_path]
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", default="certs", help="where the files go (default: certs/)")
    parser.add_argument("--days", type=int, default=825, help="validity of the certificates (default 825)")
    parser.add_argument("--force", action="store_true", help="replace an existing set")
    parser.add_argument(
        "--readable-keys",
        action="store_true",
        help="keys readable by others (0644) in a folder only you may enter (0700): for docker compose",
    )
    args = parser.parse_args(argv)
    try:
        written = make(Path(args.folder), args.days, args.force, args.readable_keys)
    except FileExistsError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(
        f"wrote {len(written)} files in {args.folder}/: ca.pem and, for {', '.join(NAMES)}, <name>.pem, <name>-key.pem"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
