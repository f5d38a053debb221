#!/usr/bin/env python3
"""Known-answer vectors from the reference stack (python twomemo 2.1.0, x3dh 1.3.0,
doubleratchet 1.3.0, xeddsa 1.2.0) for crates/omemo/src/crypto/python_kat_tests.rs.

Python "Alice" builds a session actively with Python "Bob"'s bundle and encrypts
five messages; Bob's private keys are exported so the Rust test can act as Bob.

Mode `verify`: reads `name=hex` lines (Rust as Alice towards the Bob of a vector
file given as argv[2]) on stdin, decrypts them with Python Bob (whose ratchet keys
are made deterministic), answers with `reply` and decrypts the `after` lines Rust
sent once it had read that reply.

Usage: python make_python_vectors.py > python_kex.txt
       python make_python_vectors.py verify python_kex.txt < rust_lines.txt
"""
import asyncio
import sys

import x3dh
from doubleratchet.recommended import diffie_hellman_ratchet_curve25519
from twomemo.twomemo import (
    AEADImpl, DoubleRatchetImpl, KeyExchangeImpl, MessageChainKDFImpl, RootChainKDFImpl, StateImpl,
)
from twomemo.twomemo_pb2 import OMEMOKeyExchange, OMEMOAuthenticatedMessage, OMEMOMessage

DHR = diffie_hellman_ratchet_curve25519.DiffieHellmanRatchet
SKIP = 1000


def new_state():
    return StateImpl.create(x3dh.IdentityKeyFormat.ED_25519, x3dh.HashFunction.SHA_256, StateImpl.INFO)


async def generate():
    bob = new_state()
    bob.generate_pre_keys(3)
    alice = new_state()
    bundle = bob.bundle
    pre_key_ids = {pub: index + 1 for index, pub in enumerate(sorted(bundle.pre_keys))}
    shared, ad, header = await alice.get_shared_secret_active(bundle)
    messages = [b"message %d from python" % i + bytes(range(i * 8)) for i in range(5)]
    dr, first = await DoubleRatchetImpl.encrypt_initial_message(
        DHR, RootChainKDFImpl, MessageChainKDFImpl, DoubleRatchetImpl.MESSAGE_CHAIN_CONSTANT,
        SKIP, SKIP, AEADImpl, shared, bundle.signed_pre_key, messages[0], ad)
    kex = KeyExchangeImpl(header, 1, pre_key_ids[header.pre_key]).serialize(first.ciphertext)
    model = bob.model
    print("bob_identity_seed=" + model.identity_key.secret.hex())
    print("bob_identity_public=" + bundle.identity_key.hex())
    print("bob_signed_prekey_private=" + model.signed_pre_key.priv.hex())
    print("bob_signed_prekey_signature=" + model.signed_pre_key.sig.hex())
    print("bob_signed_prekey_public=" + bundle.signed_pre_key.hex())
    for priv in sorted(model.pre_keys):
        pub = x3dh.pre_key_pair.PreKeyPair(priv).pub
        print("bob_prekey=%d:%s" % (pre_key_ids[pub], priv.hex()))
    print("alice_identity_public=" + alice.bundle.identity_key.hex())
    print("associated_data=" + ad.hex())
    print("kex=" + kex.hex())
    print("plaintext0=" + messages[0].hex())
    for index in range(1, 5):
        encrypted = await dr.encrypt_message(messages[index], ad)
        print("message%d=%s" % (index, encrypted.ciphertext.hex()))
        print("plaintext%d=%s" % (index, messages[index].hex()))


def read_lines(stream):
    values = {}
    for line in stream:
        line = line.strip()
        if "=" in line:
            name, value = line.split("=", 1)
            values.setdefault(name, []).append(value)
    return values


def make_python_deterministic():
    """Python Bob's ratchet keys from a counter, so `reply` is reproducible."""
    import hashlib
    counter = [0]

    def generate_priv():
        counter[0] += 1
        return hashlib.sha256(b"python bob ratchet %d" % counter[0]).digest()

    DHR._generate_priv = staticmethod(generate_priv)


async def verify(vector_path):
    import xeddsa
    make_python_deterministic()
    from x3dh.identity_key_pair import IdentityKeyPairSeed
    from x3dh.models import BaseStateModel, IdentityKeyPairModel, SignedPreKeyPairModel
    with open(vector_path) as handle:
        vectors = read_lines(handle)
    rust = read_lines(sys.stdin)
    model = BaseStateModel(
        identity_key=IdentityKeyPairModel(
            secret=bytes.fromhex(vectors["bob_identity_seed"][0]), secret_type="SEED"),
        signed_pre_key=SignedPreKeyPairModel(
            priv=bytes.fromhex(vectors["bob_signed_prekey_private"][0]),
            sig=bytes.fromhex(vectors["bob_signed_prekey_signature"][0]), timestamp=0),
        old_signed_pre_key=None,
        pre_keys=frozenset(bytes.fromhex(p.split(":")[1]) for p in vectors["bob_prekey"]))
    bob = StateImpl.from_model(model, x3dh.IdentityKeyFormat.ED_25519, x3dh.HashFunction.SHA_256,
                               StateImpl.INFO)
    ids = {int(p.split(":")[0]): xeddsa.priv_to_curve25519_pub(bytes.fromhex(p.split(":")[1]))
           for p in vectors["bob_prekey"]}
    kex = OMEMOKeyExchange.FromString(bytes.fromhex(rust["kex"][0]))
    header = x3dh.Header(kex.ik, kex.ek, bob.bundle.signed_pre_key, ids[kex.pk_id])
    shared, ad, spk = await bob.get_shared_secret_passive(header)
    from doubleratchet import EncryptedMessage, Header

    def parse(auth_bytes):
        auth = OMEMOAuthenticatedMessage.FromString(auth_bytes)
        msg = OMEMOMessage.FromString(auth.message)
        return EncryptedMessage(Header(msg.dh_pub, msg.pn, msg.n), auth_bytes)

    dr, plaintext = await DoubleRatchetImpl.decrypt_initial_message(
        DHR, RootChainKDFImpl, MessageChainKDFImpl, DoubleRatchetImpl.MESSAGE_CHAIN_CONSTANT,
        SKIP, SKIP, AEADImpl, shared, spk.priv, parse(kex.message.SerializeToString()), ad)
    assert plaintext.hex() == rust["plaintext0"][0], "kex plaintext differs"
    for index, message in enumerate(rust.get("message", [])):
        plaintext = await dr.decrypt_message(parse(bytes.fromhex(message)), ad)
        assert plaintext.hex() == rust["plaintext"][index], "message %d differs" % index
    reply = await dr.encrypt_message(b"reply from python bob", ad)
    after = rust.get("after", [])
    for index, message in enumerate(after):
        plaintext = await dr.decrypt_message(parse(bytes.fromhex(message)), ad)
        assert plaintext.hex() == rust["after_plaintext"][index], "after-reply message %d differs" % index
    print("python verified %d messages and %d after its reply" % (
        1 + len(rust.get("message", [])), len(after)))
    print("reply=" + reply.ciphertext.hex())


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "verify":
        asyncio.run(verify(sys.argv[2]))
    else:
        asyncio.run(generate())
