"""A test CA and the certificates of a federation, for TLS and mutual-TLS tests and demos.

Names (what ``tls.allow`` lists, matched against a caller's subject CN and SAN entries):

- the coordinator: CN ``coordinator`` (an agent's default ``tls.allow``);
- the agent of party P: CN ``party-P`` — the party id sits in the subject CN and in a SAN DNS entry;
- a client (a ``flow`` user, the SDK): CN ``<name>``, as given.

Every certificate also carries SAN ``DNS:localhost``, ``IP:127.0.0.1`` and ``IP:::1`` (plus any
``hosts``), so any of them can serve on loopback, and both the serverAuth and clientAuth usages.
Keys are EC P-256; everything is valid for ``days`` days from an hour ago.

``scripts/make_test_certs.sh OUT --party 9999 --party 10000 --client alice`` runs :func:`main`.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fate_registry.config import COORDINATOR_IDENTITY, TlsConf

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def party_identity(party_id: str) -> str:
    """The name an agent's certificate carries (CN and SAN DNS)."""
    return f"party-{party_id}"


@dataclass(frozen=True)
class CertFiles:
    """One certificate and its key, PEM files."""

    cert: Path
    key: Path

    def tls(self, ca: Path, require_client_cert: bool = False, allow: Sequence[str] = ()) -> TlsConf:
        """A ``tls`` conf presenting this certificate and trusting ``ca``."""
        return TlsConf(cert=self.cert, key=self.key, ca=ca, require_client_cert=require_client_cert, allow=tuple(allow))


@dataclass(frozen=True)
class Authority:
    """A CA that issues certificates into ``directory``."""

    directory: Path
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    days: int = 30

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    @classmethod
    def create(cls, directory: Path, name: str = "fate-registry test CA", days: int = 30) -> Authority:
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )  # keyCertSign, cRLSign
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        authority = cls(directory, key, certificate, days)
        _write(authority.ca, certificate.public_bytes(serialization.Encoding.PEM))
        _write(directory / "ca.key", _key_pem(key))
        return authority

    def issue(self, common_name: str, stem: str = "", hosts: Sequence[str] = ()) -> CertFiles:
        """A certificate for ``common_name`` (also a SAN DNS entry) and loopback; files ``<stem>.pem``/``.key``."""
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        for host in dict.fromkeys([common_name, *LOOPBACK_HOSTS, *hosts]):
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=self.days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        files = CertFiles(self.directory / f"{stem or common_name}.pem", self.directory / f"{stem or common_name}.key")
        _write(files.cert, certificate.public_bytes(serialization.Encoding.PEM))
        _write(files.key, _key_pem(key))
        return files


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    if path.suffix == ".key":
        path.chmod(0o600)


@dataclass(frozen=True)
class FederationCerts:
    """A CA and the certificates of a coordinator, its parties' agents and some clients."""

    ca: Path
    coordinator: CertFiles
    parties: dict[str, CertFiles]
    clients: dict[str, CertFiles]


def make_federation_certs(
    directory: Path, parties: Sequence[str], clients: Sequence[str] = ("client",), hosts: Sequence[str] = ()
) -> FederationCerts:
    """Write a new CA and every certificate into ``directory`` (``ca.pem``, ``coordinator.pem``, ``party-P.pem``, …)."""
    authority = Authority.create(directory)
    return FederationCerts(
        ca=authority.ca,
        coordinator=authority.issue(COORDINATOR_IDENTITY, hosts=hosts),
        parties={pid: authority.issue(party_identity(pid), hosts=hosts) for pid in parties},
        clients={name: authority.issue(name, hosts=hosts) for name in clients},
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make_test_certs.sh", description="Write a test CA and a federation's certificates (not for production)."
    )
    parser.add_argument("out", type=Path, help="directory for ca.pem, coordinator.pem, party-<id>.pem, <client>.pem")
    parser.add_argument("--party", action="append", default=[], help="a party id (repeatable)")
    parser.add_argument("--client", action="append", default=[], help="a client name (repeatable; default: client)")
    parser.add_argument("--host", action="append", default=[], help="another SAN host name or IP (repeatable)")
    args = parser.parse_args(argv)
    certs = make_federation_certs(args.out, args.party or ["9999", "10000"], args.client or ["client"], args.host)
    for files in [certs.coordinator, *certs.parties.values(), *certs.clients.values()]:
        print(f"{files.cert}  {files.key}")
    print(f"{certs.ca}  (the CA: every program's tls.ca)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
