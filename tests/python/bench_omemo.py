#!/usr/bin/env python3
"""The Python OMEMO 2 stack (twomemo 2.1.0 on OpenSSL through `cryptography`)
on the operations of crates/omemo/benches/omemo.rs, for the ratios in
BENCHMARKS.md. Usage: tests/python/.venv/bin/python tests/python/bench_omemo.py
Prints one line per operation: name, median microseconds over 7 batches.
"""
import asyncio
import statistics
import time

from cryptography.hazmat.primitives import hashes, hmac as chmac
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives import padding

import omemo_driver
from twomemo.twomemo import EncryptedKeyMaterialImpl, KeyExchangeImpl, Twomemo


def measure(name, fn, n):
    batches = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        batches.append((time.perf_counter() - start) / n * 1e6)
    print("%-60s %10.1f us" % (name, statistics.median(batches)))


async def ameasure(name, fn, n):
    batches = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(n):
            await fn()
        batches.append((time.perf_counter() - start) / n * 1e6)
    print("%-60s %10.1f us" % (name, statistics.median(batches)))


async def backend():
    b = Twomemo(omemo_driver.MemoryStorage())
    await b.generate_pre_keys(100)
    return b


async def main():
    alice, bob = await backend(), await backend()
    payload = b"\x5a" * 1024
    bob_bundle = await bob.get_bundle("bob@example.org", 2)
    content, km = await alice.encrypt_plaintext(b"hello")
    a_session, ekm = await alice.build_session_active("bob@example.org", 2, bob_bundle, km)
    kex = a_session.key_exchange.serialize(ekm.serialize())
    ke, auth = KeyExchangeImpl.parse(kex)
    b_session, _ = await bob.build_session_passive("alice@example.org", 1, ke, EncryptedKeyMaterialImpl.parse(auth, "alice@example.org", 1))

    async def round_trip():
        content, km = await alice.encrypt_plaintext(payload)
        ekm = await alice.encrypt_key_material(a_session, km)
        parsed = EncryptedKeyMaterialImpl.parse(ekm.serialize(), "alice@example.org", 1)
        km2 = await bob.decrypt_key_material(b_session, parsed)
        return await bob.decrypt_plaintext(content, km2)

    await ameasure("omemo/1 KiB payload, encrypt + decrypt, established session", round_trip, 300)

    async def key_exchange():
        content, km = await alice.encrypt_plaintext(b"x")
        session, ekm = await alice.build_session_active("bob@example.org", 2, bob_bundle, km)
        data = session.key_exchange.serialize(ekm.serialize())
        ke, auth = KeyExchangeImpl.parse(data)
        # A fresh passive session every time (bob forgets it).
        return await bob.build_session_passive("carol@example.org", 3, ke, EncryptedKeyMaterialImpl.parse(auth, "carol@example.org", 3))

    await ameasure("omemo/key exchange (initiate + receive)", key_exchange, 100)

    ten = []
    for i in range(10):
        other = await backend()
        bundle = await other.get_bundle("d%d@example.org" % i, 10 + i)
        _, km = await alice.encrypt_plaintext(b"x")
        s, _ = await alice.build_session_active("d%d@example.org" % i, 10 + i, bundle, km)
        ten.append(s)

    async def for_ten():
        content, km = await alice.encrypt_plaintext(payload)
        return [await alice.encrypt_key_material(s, km) for s in ten]

    await ameasure("omemo/1 KiB message for 10 devices", for_ten, 100)

    data = b"\x33" * 1024
    priv, pub = x25519.X25519PrivateKey.generate(), x25519.X25519PrivateKey.generate().public_key()
    measure("primitive/X25519", lambda: priv.exchange(pub), 3000)
    sk = ed25519.Ed25519PrivateKey.generate()
    sig, vk = sk.sign(data[:32]), sk.public_key()
    measure("primitive/Ed25519 verify", lambda: vk.verify(sig, data[:32]), 3000)
    measure("primitive/HKDF-SHA-256 (80 bytes out)",
            lambda: HKDF(hashes.SHA256(), 80, b"\0" * 32, b"OMEMO Payload").derive(data[:32]), 3000)

    def aes():
        padder = padding.PKCS7(128).padder()
        padded = padder.update(data) + padder.finalize()
        enc = Cipher(algorithms.AES(b"\1" * 32), modes.CBC(b"\2" * 16)).encryptor()
        return enc.update(padded) + enc.finalize()

    measure("primitive/AES-256-CBC encrypt 1 KiB", aes, 3000)

    def mac():
        h = chmac.HMAC(b"\3" * 32, hashes.SHA256())
        h.update(data)
        return h.finalize()

    measure("primitive/HMAC-SHA-256 1 KiB", mac, 3000)


if __name__ == "__main__":
    asyncio.run(main())
