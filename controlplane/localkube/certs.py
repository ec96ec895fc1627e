"""The cluster's PKI, generated with ``cryptography``: one CA and the leaf credentials.

Guarantees:
- every key is ECDSA P-256 (fast to generate, accepted by every component, including as the
  service-account signing key, ES256);
- private keys are written with mode 0600, certificates with 0644;
- the serving certificate is valid for 127.0.0.1, localhost and the in-cluster names of the
  ``kubernetes`` Service (and its cluster IP);
- client certificates carry the identity in the subject: CN = user, O = groups.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key on disk (PEM)."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class ClientIdentity:
    """Who a client certificate authenticates as."""

    name: str  # file stem
    user: str  # CN
    groups: tuple[str, ...] = ()  # O


@dataclass(frozen=True)
class Pki:
    """Paths of everything :func:`generate_pki` wrote."""

    ca: KeyPair
    serving: KeyPair
    service_account_key: Path
    service_account_pub: Path
    clients: dict[str, KeyPair]
    node_serving: KeyPair | None = None


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.chmod(0o644)


def _name(common_name: str, organizations: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _leaf_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def generate_pki(
    directory: Path,
    clients: list[ClientIdentity],
    *,
    service_ip: str = "10.0.0.1",
    node_name: str | None = None,
    extra_ips: tuple[str, ...] = (),
) -> Pki:
    """Write a fresh CA, serving certificate, service-account key pair and client certificates.

    With ``node_name``, also a serving certificate for the node's kubelet endpoint (127.0.0.1
    and ``node_name``; subject ``system:node:<name>`` in ``system:nodes``, as a kubelet's), which
    the API server verifies against the same CA. ``extra_ips`` are added to both serving
    certificates (the real node's address, where the API server and the kubelet listen).
    """
    directory.mkdir(parents=True, exist_ok=True)

    ca_key = _new_key()
    ca_name = _name("localkube-ca")
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
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
        .sign(ca_key, hashes.SHA256())
    )
    ca = KeyPair(directory / "ca.crt", directory / "ca.key")
    _write_cert(ca.cert, ca_cert)
    _write_key(ca.key, ca_key)
    authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())

    def leaf(
        stem: str,
        subject: x509.Name,
        usages: list[x509.ObjectIdentifier],
        sans: Sequence[x509.GeneralName] | None = None,
    ) -> KeyPair:
        key = _new_key()
        builder = (
            _builder(subject, ca_name, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_leaf_usage(), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(authority, critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        pair = KeyPair(directory / f"{stem}.crt", directory / f"{stem}.key")
        _write_cert(pair.cert, builder.sign(ca_key, hashes.SHA256()))
        _write_key(pair.key, key)
        return pair

    dns = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    serving = leaf(
        "apiserver",
        _name("kube-apiserver"),
        [ExtendedKeyUsageOID.SERVER_AUTH],
        [x509.DNSName(d) for d in dns]
        + [
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address(service_ip)),
        ]
        + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in extra_ips],
    )

    sa_key = _new_key()
    sa_key_path = directory / "sa.key"
    sa_pub_path = directory / "sa.pub"
    _write_key(sa_key_path, sa_key)
    sa_pub_path.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )

    issued = {
        c.name: leaf(c.name, _name(c.user, c.groups), [ExtendedKeyUsageOID.CLIENT_AUTH])
        for c in clients
    }
    node_serving = None
    if node_name:
        node_serving = leaf(
            "node-serving",
            _name(f"system:node:{node_name}", ("system:nodes",)),
            [ExtendedKeyUsageOID.SERVER_AUTH],
            [x509.DNSName(node_name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in extra_ips],
        )
    return Pki(ca, serving, sa_key_path, sa_pub_path, issued, node_serving)
