"""`--web.config.file`: TLS and basic auth in the Prometheus exporter-toolkit format.

The file is the one node_exporter and every exporter built on
github.com/prometheus/exporter-toolkit read (docs/web-configuration.md there):

    tls_server_config:
      cert_file: exporter.crt          # relative paths: from the file's directory
      key_file: exporter.key
      client_auth_type: RequireAndVerifyClientCert   # optional, with client_ca_file
      client_ca_file: clients.pem
      min_version: TLS12               # TLS12 (default) or TLS13
    basic_auth_users:
      prometheus: $2y$10$...           # bcrypt hash: htpasswd -nBC 10 "" | tr -d ':\\n'

It is YAML; halfopen reads the part of YAML this format needs (block mappings,
plain and quoted scalars, comments) without a YAML library, and names the line
of anything else. Like exporter-toolkit it refuses keys it does not know, so a
typo never silently drops TLS or auth. bcrypt (`pip install 'halfopen[auth]'`)
is needed only when the file has users.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import ssl
from dataclasses import field
from typing import Any, Optional

from halfopen.records import record

from ... import fsio
from ...errors import UsageError

MAX_BYTES = 1 << 20
BCRYPT_HASH = re.compile(r"\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}")
# A valid hash of a password nobody knows: unknown users cost one bcrypt check
# too, so the answer's timing does not say which user names exist.
_DUMMY_HASH = b"$2b$10$3HcnDUXRdhAGXAN97bdnj.T7N06zgEn24.g20HYDpeRCZcPHlfQtu"
CLIENT_AUTH = {"NoClientCert": ssl.CERT_NONE, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
               "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
TLS_KEYS = ("cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version",
            "max_version")
TOP_KEYS = ("tls_server_config", "basic_auth_users")
AUTH_CACHE = 64  # remembered good (user, password) pairs: a scrape costs no bcrypt
# bcrypt reads 72 bytes of a password; bcrypt >= 5 raises ValueError past them (older
# ones ignored the rest). Longer ones are refused before bcrypt, as wrong: their length
# is the client's own knowledge, so answering at once tells it nothing.
MAX_PASSWORD_BYTES = 72


@record(frozen=True)
class Access:
    """Who may scrape, and over what: no TLS and no users means plain and open."""

    tls: Optional[ssl.SSLContext] = None
    users: dict = field(default_factory=dict)  # user -> bcrypt hash (bytes)
    _good: dict = field(default_factory=dict)  # sha256(user NUL password) -> True

    def check(self, user: str, password: str) -> bool:
        import bcrypt  # noqa: PLC0415 - optional; present whenever users is (see load)
        secret = password.encode("utf-8", "surrogatepass")
        if len(secret) > MAX_PASSWORD_BYTES:
            return False
        key = hashlib.sha256(f"{user}\0{password}".encode("utf-8", "surrogatepass")).digest()
        if key in self._good:
            return True
        hashed = self.users.get(user)
        ok = bcrypt.checkpw(secret, hashed or _DUMMY_HASH)
        ok = ok and hashed is not None
        if ok:
            if len(self._good) >= AUTH_CACHE:
                self._good.clear()
            self._good[key] = True
        return ok


# ---------------------------------------------------------------- the YAML this format needs

def _uncomment(line: str) -> str:
    """Drop a `#` comment: at the start or after a space, outside quotes."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"" and (i == 0 or line[i - 1] in " :"):
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i]
    return line


def _scalar(text: str, where: str) -> str:
    if text[0] == "'":
        if len(text) < 2 or text[-1] != "'":
            raise UsageError(f"{where}: unterminated quoted string")
        return text[1:-1].replace("''", "'")
    if text[0] == '"':
        try:
            value = json.loads(text)
        except ValueError:
            raise UsageError(f"{where}: bad double-quoted string (a JSON string)") from None
        if not isinstance(value, str):
            raise UsageError(f"{where}: bad double-quoted string (a JSON string)")
        return value
    if text[0] in "[{&*!|>%@`":
        raise UsageError(f"{where}: {text[0]!r}: flow style, anchors, tags and block "
                         "scalars are not supported here; write `key: value` lines")
    return text


def parse_yaml(text: str, path: str) -> dict[str, Any]:
    """Block mappings of strings, as indented `key: value` lines.

    >>> parse_yaml("a:\\n  b: 'x y'  # c\\n  d: $2b$\\n", "f")
    {'a': {'b': 'x y', 'd': '$2b$'}}
    """
    root: dict[str, Any] = {}
    stack: list[list[Any]] = [[-1, root, None]]  # [indent, mapping, its children's indent]
    for number, raw in enumerate(text.splitlines(), 1):
        where = f"{path}:{number}"
        line = _uncomment(raw).rstrip()
        body = line.lstrip(" ")
        if not body or body in ("---", "..."):
            continue
        if body[0] == "\t" or "\t" in line[:len(line) - len(body)]:
            raise UsageError(f"{where}: a tab in the indentation; indent with spaces")
        if body.startswith("- ") or body == "-":
            raise UsageError(f"{where}: lists are not used by this format")
        indent = len(line) - len(body)
        key, sep, value = body.partition(":")
        if not sep or (value and value[0] != " ") or not key.strip():
            # the line itself is not shown: a secret file named here by mistake
            # (/etc/shadow) must not reach the terminal or a log
            raise UsageError(f"{where}: not a `key: value` line (a key, a colon, a space, "
                             "the value)")
        key, value = key.strip(), value.strip()
        if key[0] in "'\"":
            key = _scalar(key, where)
        while stack[-1][0] >= indent:
            stack.pop()
        top = stack[-1]
        if top[2] is None:
            top[2] = indent
        elif top[2] != indent:
            raise UsageError(f"{where}: indentation does not line up with the lines above")
        if key in top[1]:
            raise UsageError(f"{where}: {key!r} appears twice")
        if value:
            top[1][key] = _scalar(value, where)
        else:
            child: dict[str, Any] = {}
            top[1][key] = child
            stack.append([indent, child, None])
    return root


# ---------------------------------------------------------------- the config

def _strings(section: Any, name: str, path: str, allowed: tuple[str, ...] | None
             ) -> dict[str, str]:
    if section == {} or section is None:
        return {}
    if not isinstance(section, dict):
        raise UsageError(f"{path}: {name} must be a mapping")
    for key, value in section.items():
        if allowed is not None and key not in allowed:
            raise UsageError(f"{path}: unknown key {name}.{key}; known: {', '.join(allowed)}")
        if not isinstance(value, str):
            raise UsageError(f"{path}: {name}.{key} must be a string")
    return section


def load(path: str) -> Access:
    """Read and check a web config file; build the TLS context and the user table."""
    # fsio: a FIFO or device there is refused (a FIFO once read as empty: no TLS, no auth)
    doc = parse_yaml(fsio.read_text(path, "--web.config.file", MAX_BYTES), path)
    for key in doc:
        if key not in TOP_KEYS:
            raise UsageError(f"{path}: unknown or unsupported key {key!r}; halfopen reads "
                             f"{', '.join(TOP_KEYS)}")
    tls = _strings(doc.get("tls_server_config"), "tls_server_config", path, TLS_KEYS)
    users = _strings(doc.get("basic_auth_users"), "basic_auth_users", path, None)
    return Access(tls=_context(tls, os.path.dirname(os.path.abspath(path)), path) if tls else None,
                  users=_users(users, path))


def _users(users: dict[str, str], path: str) -> dict[str, bytes]:
    for user, hashed in users.items():
        if not BCRYPT_HASH.fullmatch(hashed):
            raise UsageError(f"{path}: basic_auth_users.{user} is not a bcrypt hash "
                             "($2y$10$ and 53 characters; make one with htpasswd -nBC 10 USER)")
    if users:
        try:
            import bcrypt  # noqa: PLC0415 - optional dependency
        except ImportError:
            raise UsageError(f"{path} has basic_auth_users, which needs the bcrypt module: "
                             "pip install 'halfopen[auth]' (or apt install python3-bcrypt)"
                             ) from None
        for user, hashed in users.items():
            try:  # a cost past 31 or a bad salt passes the pattern; bcrypt raises on it
                bcrypt.checkpw(b"", hashed.encode("ascii"))
            except ValueError as exc:
                raise UsageError(f"{path}: basic_auth_users.{user}: bcrypt cannot use this "
                                 f"hash ({exc}); make one with htpasswd -nBC 10 USER") from None
    return {u: h.encode("ascii") for u, h in users.items()}


def _context(tls: dict[str, str], base: str, path: str) -> ssl.SSLContext:
    def at(name: str) -> str:
        return os.path.join(base, tls[name])

    if "cert_file" not in tls or "key_file" not in tls:
        raise UsageError(f"{path}: tls_server_config needs cert_file and key_file")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    for key, attr in (("min_version", "minimum_version"), ("max_version", "maximum_version")):
        if key in tls:
            if tls[key] not in VERSIONS:
                raise UsageError(f"{path}: tls_server_config.{key} {tls[key]!r}: "
                                 f"one of {', '.join(VERSIONS)}")
            setattr(ctx, attr, VERSIONS[tls[key]])
    if "min_version" not in tls:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # exporter-toolkit's default
    try:
        ctx.load_cert_chain(at("cert_file"), at("key_file"))
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"{path}: cannot load cert_file {at('cert_file')} / key_file "
                         f"{at('key_file')}: {getattr(exc, 'strerror', None) or exc}") from None
    mode = tls.get("client_auth_type", "NoClientCert")
    if mode not in CLIENT_AUTH:
        raise UsageError(f"{path}: tls_server_config.client_auth_type {mode!r}: one of "
                         f"{', '.join(CLIENT_AUTH)}")
    ctx.verify_mode = CLIENT_AUTH[mode]
    if mode != "NoClientCert":
        if "client_ca_file" not in tls:
            raise UsageError(f"{path}: client_auth_type {mode} needs client_ca_file")
        try:
            ctx.load_verify_locations(at("client_ca_file"))
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"{path}: cannot load client_ca_file {at('client_ca_file')}: "
                             f"{getattr(exc, 'strerror', None) or exc}") from None
    return ctx
