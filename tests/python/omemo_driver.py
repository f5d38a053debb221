#!/usr/bin/env python3
"""Drives python-omemo's OMEMO 2 backend (twomemo.Twomemo) for the Rust interop
tests (crates/omemo/tests/python_interop.rs): one JSON request per line on
stdin, one JSON answer per line on stdout. Bytes travel as hex.

Requests:
  {"op": "bundle"}
      -> {"ik", "spk", "spk_id", "spks", "prekeys": {id: pub}}
  {"op": "encrypt", "jid", "device", "bundle": {...} | null, "plaintext": hex | null,
   "copies": n (optional, default 1)}
      plaintext null sends an empty (key-material-only) message; copies > 1
      encrypts the key material that many times with the same session (two
      <key> elements for one device, as QXmpp writes for its own account)
      -> {"kex": bool, "key": hex, "keys": [hex, ...], "payload": hex | null}
  {"op": "decrypt", "jid", "device", "kex": bool, "key": hex, "payload": hex | null}
      -> {"plaintext": hex | null}
  {"op": "device_list", "label": str}
      this device (id 1) in a device list, its label signed (twomemo.etree)
      -> {"xml": str}
  {"op": "read_device_list", "xml": str, "ik": hex}
      parses (and schema-validates) a device list; checks each label's
      signature with identity key ik
      -> {"devices": {id: {"label": str | null, "valid": bool | null}}}
Errors -> {"error": "..."}; the driver keeps running.
"""
import asyncio
import json
import sys
import xml.etree.ElementTree as ET

import x3dh
from omemo import SignedLabel
from omemo.session import Initiation
from omemo.storage import Just, Nothing, Storage
from twomemo.etree import parse_device_list, serialize_device_list
from twomemo.twomemo import (
    BundleImpl, ContentImpl, EncryptedKeyMaterialImpl, KeyExchangeImpl, Twomemo,
)


class MemoryStorage(Storage):
    def __init__(self):
        super().__init__(True)
        self.data = {}

    async def _load(self, key):
        return Just(self.data[key]) if key in self.data else Nothing()

    async def _store(self, key, value):
        self.data[key] = value

    async def _delete(self, key):
        self.data.pop(key, None)


def rust_bundle(jid, device, b):
    prekeys = {bytes.fromhex(pub): int(i) for i, pub in b["prekeys"].items()}
    bundle = x3dh.Bundle(
        bytes.fromhex(b["ik"]), bytes.fromhex(b["spk"]), bytes.fromhex(b["spks"]), frozenset(prekeys))
    return BundleImpl(jid, device, bundle, int(b["spk_id"]), prekeys)


async def handle(backend, request):
    op = request["op"]
    if op == "bundle":
        bundle = await backend.get_bundle("python@example.org", 1)
        return {
            "ik": bundle.bundle.identity_key.hex(),
            "spk": bundle.bundle.signed_pre_key.hex(),
            "spk_id": bundle.signed_pre_key_id,
            "spks": bundle.bundle.signed_pre_key_sig.hex(),
            "prekeys": {str(i): pub.hex() for pub, i in bundle.pre_key_ids.items()},
        }
    if op == "device_list":
        label = request["label"]
        signed = SignedLabel(label=label, signature=await backend.sign_own_label(label))
        return {"xml": ET.tostring(serialize_device_list({1: signed}), encoding="unicode")}
    if op == "read_device_list":
        devices = {}
        for device_id, signed in parse_device_list(ET.fromstring(request["xml"])).items():
            if signed is None:
                devices[str(device_id)] = {"label": None, "valid": None}
            else:
                valid = await backend.verify_label_signature(
                    signed.label, signed.signature, bytes.fromhex(request["ik"]))
                devices[str(device_id)] = {"label": signed.label, "valid": valid}
        return {"devices": devices}
    jid, device = request["jid"], int(request["device"])
    if op == "encrypt":
        if request.get("plaintext") is None:
            content, key_material = await backend.encrypt_empty()
        else:
            content, key_material = await backend.encrypt_plaintext(bytes.fromhex(request["plaintext"]))
        session = await backend.load_session(jid, device)
        copies = int(request.get("copies", 1))
        encrypted_copies = []
        if session is None:
            if request.get("bundle") is None:
                raise ValueError("no session and no bundle")
            session, encrypted = await backend.build_session_active(
                jid, device, rust_bundle(jid, device, request["bundle"]), key_material)
            encrypted_copies.append(encrypted)
        while len(encrypted_copies) < copies:
            encrypted_copies.append(await backend.encrypt_key_material(session, key_material))
        await backend.store_session(session)
        kex = session.initiation is Initiation.ACTIVE and not session.confirmed
        keys = [
            (session.key_exchange.serialize(e.serialize()) if kex else e.serialize()).hex()
            for e in encrypted_copies
        ]
        return {"kex": kex, "key": keys[0], "keys": keys,
                "payload": None if content.empty else content.ciphertext.hex()}
    if op == "decrypt":
        key = bytes.fromhex(request["key"])
        session = await backend.load_session(jid, device)
        if request["kex"]:
            key_exchange, authenticated = KeyExchangeImpl.parse(key)
            encrypted = EncryptedKeyMaterialImpl.parse(authenticated, jid, device)
            if session is not None and session.key_exchange.builds_same_session(key_exchange):
                key_material = await backend.decrypt_key_material(session, encrypted)
            else:
                session, key_material = await backend.build_session_passive(jid, device, key_exchange, encrypted)
        else:
            if session is None:
                raise ValueError("no session")
            encrypted = EncryptedKeyMaterialImpl.parse(key, jid, device)
            key_material = await backend.decrypt_key_material(session, encrypted)
        if session.initiation is Initiation.ACTIVE:
            session.confirm()
        await backend.store_session(session)
        if request.get("payload") is None:
            return {"plaintext": None}
        plaintext = await backend.decrypt_plaintext(ContentImpl(bytes.fromhex(request["payload"])), key_material)
        return {"plaintext": plaintext.hex()}
    raise ValueError("unknown op %r" % op)


async def main():
    backend = Twomemo(MemoryStorage())
    await backend.generate_pre_keys(25)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            answer = await handle(backend, json.loads(line))
        except Exception as error:  # reported to the Rust side, which fails the test
            answer = {"error": "%s: %s" % (type(error).__name__, error)}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())
