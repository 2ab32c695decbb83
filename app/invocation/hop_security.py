"""How sidecars prove to each other that a hop comes from a sidecar of the deployment.

The hop (one sidecar forwarding an invocation to another) is the only way a caller identity reaches an
app, so it is authenticated by something the apps and their clients never hold — never the app's
``DAPR_API_TOKEN``, which stays on its sidecar. Two mechanisms, either or both:

* a **hop secret** shared by every sidecar of the deployment, sent in ``layotto-internal-token`` and
  compared in constant time. In order: ``LAYOTTO_INTERNAL_TOKEN``, then ``--internal-token-file``; when
  neither is set and mutual TLS is not configured, a random secret created once per OS user in
  ``~/.layotto/internal-token`` (mode 0600), so local sidecars of one user call each other with no
  configuration (trust = same OS user, as for the name registry next to it);
* **mutual TLS** with a CA of the deployment (``--internal-tls-cert-file``, ``--internal-tls-key-file``,
  ``--internal-tls-ca-file``): the internal listener requires a client certificate the CA signed, and the
  hop's client accepts only a server certificate the CA signed and presents its own. Like Dapr's trust
  domain, membership is the CA's signature: host names are not checked (name resolvers hand out IPs), so
  the CA must be one dedicated to the deployment. With mutual TLS and no explicit secret, no secret is sent.

Configuration problems stop start-up (``SpecError``: one line naming the file).
"""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path

from app.settings import Settings
from building_blocks.errors import SpecError
from building_blocks.invocation.headers import HOP_TOKEN, Headers

__all__ = ("DEFAULT_TOKEN_FILE", "HopSecurity", "per_user_secret")

DEFAULT_TOKEN_FILE = "~/.layotto/internal-token"


def _checked(token: bytes, where: str) -> bytes:
    """A secret fit for a header value: printable ASCII, no spaces."""
    if not token or any(c < 0x21 or c > 0x7E for c in token):
        raise SpecError(f"{where}: the internal token must be one word of printable ASCII")
    return token


def _read_token(path: Path) -> bytes:
    try:
        token = path.read_bytes().strip()
    except OSError as exc:
        raise SpecError(f"internal token file {path}: {exc.strerror or exc}") from None
    return _checked(token, f"internal token file {path}")


def per_user_secret(path: Path) -> bytes:
    """The secret in ``path``, created (random, mode 0600) when missing; refused when others may read it.

    Created under a temporary name and linked into place, so sidecars starting together agree on one secret
    and none ever reads a half-written file.
    """
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "w") as file:
                file.write(secrets.token_hex(32) + "\n")
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            temporary.unlink()
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SpecError(f"internal token file {path}: readable by other users (mode {oct(mode & 0o777)}); chmod 600")
    return _read_token(path)


def _tls_files(settings: Settings) -> tuple[Path, Path, Path] | None:
    files = (settings.internal_tls_cert_file, settings.internal_tls_key_file, settings.internal_tls_ca_file)
    if not any(files):
        return None
    cert, key, ca = files
    if cert is None or key is None or ca is None:
        raise SpecError("internal mutual TLS needs all of --internal-tls-cert-file, -key-file and -ca-file")
    return cert, key, ca


def _context(purpose: ssl.Purpose, cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    """A context that presents ``cert`` and accepts only peers whose certificate ``ca`` signed."""
    server = purpose is ssl.Purpose.CLIENT_AUTH
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False  # membership is the CA's signature (see the module docstring)
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise SpecError(f"internal TLS certificate {cert} / key {key}: {_reason(exc)}") from None
    try:
        context.load_verify_locations(ca)
    except (OSError, ssl.SSLError) as exc:
        raise SpecError(f"internal TLS CA {ca}: {_reason(exc)}") from None
    return context


def _reason(exc: OSError) -> str:
    return str(exc.strerror or exc) if not isinstance(exc, ssl.SSLError) else exc.reason or str(exc)


@dataclass(frozen=True, slots=True)
class HopSecurity:
    """The hop's credentials: the secret (``b""`` = none, mutual TLS only) and the TLS contexts, if any."""

    token: bytes = b""
    client_tls: ssl.SSLContext | None = None
    server_tls: ssl.SSLContext | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> HopSecurity:
        tls = _tls_files(settings)
        if settings.internal_token:
            token = _checked(settings.internal_token.strip().encode(), "LAYOTTO_INTERNAL_TOKEN")
        elif settings.internal_token_file is not None:
            token = _read_token(settings.internal_token_file)
        elif tls is None:
            token = per_user_secret(Path(DEFAULT_TOKEN_FILE).expanduser())
        else:
            token = b""
        if tls is None:
            return cls(token)
        return cls(token, _context(ssl.Purpose.SERVER_AUTH, *tls), _context(ssl.Purpose.CLIENT_AUTH, *tls))

    def headers(self) -> Headers:
        """What a hop request carries to authenticate itself (besides its client certificate)."""
        return [(HOP_TOKEN, self.token)] if self.token else []

    def admits(self, headers: Headers) -> bool:
        """Whether a hop request carries the secret (its certificate was checked by the TLS handshake)."""
        if not self.token:
            return True
        for name, value in headers:
            if name == HOP_TOKEN:
                return hmac.compare_digest(value, self.token)
        return False
