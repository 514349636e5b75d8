"""A private certificate authority for the emulator's HTTPS endpoints.

Azure refuses bearer tokens and SAS over plain http, and so do the SDKs
(azure-core's BearerTokenCredentialPolicy raises on http). The emulator
therefore serves TLS with a certificate from its own CA; clients trust it
through ``REQUESTS_CA_BUNDLE``, the same knob a corporate proxy CA uses, so
no client ever needs ``verify=False``. The CA lives in the state dir so a
restarted emulator keeps the trust that clients already have.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT = "ca.pem"
_CA_KEY = "ca-key.pem"
_SERVER_CERT = "server.pem"
_SERVER_KEY = "server-key.pem"


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mccf-backup local Azure emulator"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _create_ca(tls_dir: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("mccf-backup emulator CA"))
        .issuer_name(_name("mccf-backup emulator CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(tls_dir / _CA_KEY, key)
    (tls_dir / CA_CERT).write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _create_server_cert(tls_dir: Path) -> None:
    ca_key = serialization.load_pem_private_key((tls_dir / _CA_KEY).read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate((tls_dir / CA_CERT).read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(tls_dir / _SERVER_KEY, key)
    (tls_dir / _SERVER_CERT).write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _server_cert_valid(tls_dir: Path) -> bool:
    path = tls_dir / _SERVER_CERT
    if not path.exists():
        return False
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return cert.not_valid_after_utc > dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=7)


def server_context(tls_dir: Path) -> ssl.SSLContext:
    """Return a TLS 1.2+ server context, creating the CA and certificate on first use."""
    tls_dir.mkdir(parents=True, exist_ok=True)
    if not (tls_dir / CA_CERT).exists():
        _create_ca(tls_dir)
    if not _server_cert_valid(tls_dir):
        _create_server_cert(tls_dir)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls_dir / _SERVER_CERT, tls_dir / _SERVER_KEY)
    return context
