"""国密 (SM2/SM3/SM4) helpers for the provinces that use them. Off by default.

Province-specific, not national: most provinces send cainfo/signtype empty and rely on the
gateway's header signature. Two variants are seen: (1) the centre returns ``output`` as a
Base64 string of SM4-ECB(PKCS#7) cipher-text (Jilin sample), decrypted here with
``gateway.gm_sm4_key``; (2) ``cainfo`` carries an SM2 signature over the ASCII-sorted envelope
fields except cainfo and input ("k=v&k=v", empty values kept), Base64 of the 64-byte r||s,
with ``signtype`` "SM2". Confirm both details with the province before switching them on.

SM3/SM4 come from ``cryptography`` (OpenSSL); SM2 from the pure-Python ``gmssl`` package (the
``gm`` extra). Both are imported lazily so a site without them loses only this feature.
"""
from __future__ import annotations

import base64
import binascii
import json
import secrets
from typing import Any


class GMUnavailable(RuntimeError):
    """The optional crypto package for a 国密 feature is not installed."""


def _cryptography():
    try:
        from cryptography.hazmat.primitives import hashes, padding
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    except ImportError as exc:  # pragma: no cover - depends on the host
        raise GMUnavailable("SM3/SM4 need the 'cryptography' package "
                            "(pip install 'mi-worker[gm]')") from exc
    return hashes, padding, Cipher, algorithms, modes


def sm3_hex(data: bytes) -> str:
    """SM3 digest as lowercase hex."""
    hashes, _, _, _, _ = _cryptography()
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize().hex()


def sm4_ecb_encrypt(key: bytes, data: bytes, pad: bool = True) -> bytes:
    """SM4-ECB; PKCS#7 padding unless ``pad`` is False (then data must be whole blocks)."""
    _, padding, Cipher, algorithms, modes = _cryptography()
    if pad:
        padder = padding.PKCS7(128).padder()
        data = padder.update(data) + padder.finalize()
    enc = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
    return enc.update(data) + enc.finalize()


def sm4_ecb_decrypt(key: bytes, data: bytes, pad: bool = True) -> bytes:
    _, padding, Cipher, algorithms, modes = _cryptography()
    dec = Cipher(algorithms.SM4(key), modes.ECB()).decryptor()
    plain = dec.update(data) + dec.finalize()
    if pad:
        unpadder = padding.PKCS7(128).unpadder()
        plain = unpadder.update(plain) + unpadder.finalize()
    return plain


def encrypt_output(output: Any, key_hex: str) -> str:
    """The centre's side of variant (1), for the sandbox and tests."""
    plain = json.dumps(output, ensure_ascii=False).encode("utf-8")
    return base64.b64encode(sm4_ecb_encrypt(bytes.fromhex(key_hex), plain)).decode("ascii")


def decrypt_output(output: str, key_hex: str) -> Any:
    """Base64 SM4-ECB cipher-text -> the JSON ``output`` object."""
    try:
        cipher = base64.b64decode(output, validate=True)
        plain = sm4_ecb_decrypt(bytes.fromhex(key_hex), cipher)
        return json.loads(plain.decode("utf-8"))
    except GMUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure means "unreadable"
        raise ValueError(f"cannot decrypt SM4 output: {exc}") from None


def signing_string(envelope: dict[str, Any]) -> str:
    """ASCII-sorted "k=v" of every envelope field except cainfo and input, joined by "&"."""
    items = sorted((k, v) for k, v in envelope.items() if k not in ("cainfo", "input"))
    return "&".join(f"{k}={'' if v is None else v}" for k, v in items)


def _sm2(private_key_hex: str, public_key_hex: str):
    try:
        from gmssl import sm2
    except ImportError as exc:
        raise GMUnavailable("SM2 needs the 'gmssl' package (pip install 'mi-worker[gm]')") \
            from exc
    pub = public_key_hex[2:] if len(public_key_hex) == 130 else public_key_hex
    crypt = sm2.CryptSM2(private_key=private_key_hex, public_key=pub)
    crypt.public_key = pub  # gmssl's own lstrip("04") can eat leading digits of x
    return crypt


def sm2_sign(data: bytes, private_key_hex: str, public_key_hex: str) -> str:
    """SM3withSM2 (default user id 1234567812345678) -> Base64 of r||s (64 bytes)."""
    crypt = _sm2(private_key_hex, public_key_hex)
    sig_hex = crypt.sign_with_sm3(data, secrets.token_hex(32))
    return base64.b64encode(binascii.unhexlify(sig_hex)).decode("ascii")


def sm2_verify(signature_b64: str, data: bytes, public_key_hex: str) -> bool:
    crypt = _sm2("", public_key_hex)
    sig_hex = base64.b64decode(signature_b64).hex()
    return bool(crypt.verify_with_sm3(sig_hex, data))


def sign_envelope(envelope: dict[str, Any], private_key_hex: str, public_key_hex: str) -> None:
    """Set signtype SM2 and cainfo = SM2 signature of :func:`signing_string` (in place)."""
    envelope["signtype"] = "SM2"
    data = signing_string(envelope).encode("utf-8")
    envelope["cainfo"] = sm2_sign(data, private_key_hex, public_key_hex)


def sm2_keypair() -> tuple[str, str]:
    """A fresh (private_hex, public_hex without 04) pair, for tests and key set-up."""
    try:
        from gmssl import sm2
    except ImportError as exc:
        raise GMUnavailable("SM2 needs the 'gmssl' package") from exc
    n = int(sm2.default_ecc_table["n"], 16)
    d = secrets.randbelow(n - 2) + 1
    priv = f"{d:064x}"
    crypt = sm2.CryptSM2(private_key=priv, public_key="")
    pub = crypt._kg(d, sm2.default_ecc_table["g"])
    return priv, pub
