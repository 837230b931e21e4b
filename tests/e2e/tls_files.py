"""A private CA and a server certificate for the TLS tests, made by ``trustme``."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from .harness import LOCALHOST


@dataclass(frozen=True)
class TlsFiles:
    """A private CA and a server certificate for 127.0.0.1, as PEM files."""

    ca: Path
    cert: Path
    key: Path
    spki: str
    """Base64 SHA-256 of the server key's SubjectPublicKeyInfo (what Chromium pins)."""


def make_tls_files(directory: Path) -> TlsFiles:
    """Write a new CA and a server certificate (with its key) for 127.0.0.1 to ``directory``."""
    trustme = pytest.importorskip("trustme")
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    ca = trustme.CA()
    issued = ca.issue_cert(LOCALHOST, "localhost")
    files = TlsFiles(directory / "ca.pem", directory / "cert.pem", directory / "key.pem", "")
    ca.cert_pem.write_to_path(str(files.ca))
    for blob in issued.cert_chain_pems:
        blob.write_to_path(str(files.cert), append=True)
    issued.private_key_pem.write_to_path(str(files.key))
    leaf = x509.load_pem_x509_certificate(issued.cert_chain_pems[0].bytes())
    spki = leaf.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    pin = base64.b64encode(hashlib.sha256(spki).digest()).decode()
    return TlsFiles(files.ca, files.cert, files.key, pin)
