#!/usr/bin/env python3
"""An independent verifier of Signet Merkle batch receipts (FILE.receipt).

Written from appliance/formats/BATCH.md alone, with the Python standard library and the `openssl`
command, so that tests/cli/receipt_test.cc can check that what `signet sign --key batch` writes is
what the documentation says, and that `signet verify` and this script agree on every receipt.

Usage: verify_receipt.py PUB.pem FILE...
       verify_receipt.py PUB.pem --bundle BUNDLE [FILE...]

For each FILE, reads FILE.receipt (with --bundle: the BUNDLE line whose receipt names FILE; without
FILEs, every file BUNDLE names) and prints "FILE: OK" or "FILE: FAILED (<step>)", where <step> is
the first of BATCH.md's verification steps that fails: key unknown, signature wrong, note does not
match the receipt, leaf altered, proof wrong, file changed (or "malformed receipt" when the receipt
cannot be read at all). Exits 0 when every FILE is OK, 1 when any fails, 2 on a usage error.
"""

import base64
import binascii
import hashlib
import json
import os
import re
import struct
import subprocess
import sys
import tempfile

LEAF_PREFIX = b"signet-batch-leaf/v1\n"  # 21 bytes
EM_DASH = "\u2014"
SIG_TYPE_ECDSA = 0x02  # BATCH.md: as transparency-dev and Rekor use it (not part of the key ID)
DIGESTS = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}


class Failed(Exception):
    """A verification step failed; str(self) is the step's name from BATCH.md."""


def b64(text):
    """Standard base64 with padding (RFC 4648 section 4), strictly."""
    if not isinstance(text, str):
        raise ValueError("not a string")
    return base64.b64decode(text.encode("ascii"), validate=True)


def spki_der(pub_pem):
    """The DER SubjectPublicKeyInfo of PUB.pem, from `openssl pkey`."""
    run = subprocess.run(
        ["openssl", "pkey", "-pubin", "-in", pub_pem, "-outform", "DER"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        check=False,
    )
    if run.returncode != 0 or not run.stdout:
        raise SystemExit("verify_receipt.py: cannot read %s: %s" % (pub_pem, run.stderr.decode()))
    return run.stdout


def openssl_verifies(pub_pem, statement, signature):
    """`openssl dgst -sha256 -verify PUB -signature SIG STATEMENT` accepts the DER signature."""
    with tempfile.TemporaryDirectory() as tmp:
        statement_path = os.path.join(tmp, "statement.txt")
        sig_path = os.path.join(tmp, "sig.der")
        with open(statement_path, "wb") as f:
            f.write(statement)
        with open(sig_path, "wb") as f:
            f.write(signature)
        run = subprocess.run(
            ["openssl", "dgst", "-sha256", "-verify", pub_pem, "-signature", sig_path,
             statement_path],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            check=False,
        )
        return run.returncode == 0 and b"Verified OK" in run.stdout


def split_note(note):
    """Splits a C2SP signed note into (text bytes, [(name, signature bytes)]).

    The text ends in a newline and is followed by an empty line; each signature line is
    "<em dash> <name> <base64>". BATCH.md: a note that does not parse is "signature wrong".
    """
    raw = note.encode("utf-8")
    cut = raw.rfind(b"\n\n")
    if cut < 0:
        raise Failed("signature wrong")
    text, sigs = raw[: cut + 1], raw[cut + 2:]
    if not sigs.endswith(b"\n"):
        raise Failed("signature wrong")
    lines = []
    for line in sigs[:-1].decode("utf-8").split("\n"):
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != EM_DASH or not parts[1]:
            raise Failed("signature wrong")
        try:
            lines.append((parts[1], b64(parts[2])))
        except (ValueError, binascii.Error):
            raise Failed("signature wrong")
    return text, lines


def parse_statement(text):
    """The four lines of the statement: (origin, tree size, root, batch id, time); None when the
    text is not shaped as BATCH.md's "Statement" says."""
    try:
        lines = text.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        return None
    if len(lines) != 5 or lines[4] != "":
        return None
    origin, size, root, ext = lines[:4]
    if not re.fullmatch(r"[^/]+/signet-batch/[A-Za-z0-9._-]+", origin):
        return None
    if not re.fullmatch(r"[1-9][0-9]*", size):
        return None
    try:
        root_bytes = b64(root)
    except (ValueError, binascii.Error):
        return None
    if len(root_bytes) != 32:
        return None
    m = re.fullmatch(r"signet-batch ([0-9a-f]{32}) (0|[1-9][0-9]*)", ext)
    if not m:
        return None
    return origin, int(size), root_bytes, m.group(1), int(m.group(2))


def leaf_bytes(leaf):
    """The leaf's bytes, per BATCH.md's "Leaf" table (big-endian lengths and size)."""
    name = leaf["name"].encode("utf-8")
    algorithm = leaf["digest_algorithm"].encode("ascii")
    digest = bytes.fromhex(leaf["digest"])
    request_id = leaf["request_id"].encode("ascii")
    size = leaf["size"]
    if not 1 <= len(name) <= 4096 or not 1 <= len(algorithm) <= 32:
        raise ValueError("field length out of range")
    if not 1 <= len(digest) <= 64 or len(request_id) > 128:
        raise ValueError("field length out of range")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size < 2**64:
        raise ValueError("size out of range")
    return b"".join([
        LEAF_PREFIX,
        struct.pack(">I", len(name)), name,
        struct.pack(">Q", size),
        struct.pack(">B", len(algorithm)), algorithm,
        struct.pack(">B", len(digest)), digest,
        struct.pack(">B", len(request_id)), request_id,
    ])


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_proof(leaf_hash, index, size, proof):
    """RFC 9162 section 2.1.3.2: the root the inclusion proof leads to, or None."""
    if index >= size:
        return None
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn != 0 and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def file_digest(path, algorithm):
    h = DIGESTS[algorithm]()
    size = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def is_uint(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def verify(pub_pem, der, path, text=None):
    """Raises Failed(step) at the first step that fails. `text`: the receipt (from a bundle), else
    FILE.receipt is read."""
    try:
        if text is None:
            with open(path + ".receipt", "rb") as f:
                text = f.read()
        receipt = json.loads(text.decode("utf-8"))
        if receipt.get("type") != "signet-batch-receipt/v1":
            raise ValueError("type")
        leaf = receipt["leaf"]
        note = receipt["note"]
        batch_id = receipt["batch_id"]
        tree_size = receipt["tree_size"]
        leaf_index = receipt["leaf_index"]
        leaf_hash = b64(receipt["leaf_hash"])
        proof = [b64(p) for p in receipt["inclusion_proof"]]
        fingerprint = receipt["key_fingerprint"]
        if not isinstance(note, str) or not isinstance(fingerprint, str):
            raise ValueError("note or key_fingerprint")
        if not is_uint(tree_size) or not is_uint(leaf_index) or len(proof) > 64:
            raise ValueError("tree_size, leaf_index or inclusion_proof")
        if leaf_index >= tree_size:
            raise ValueError("leaf_index not below tree_size")
        known = {"type", "leaf", "leaf_hash", "leaf_index", "tree_size", "batch_id",
                 "inclusion_proof", "note", "key_fingerprint", "seq"}
        if set(receipt) - known or set(leaf) != {"name", "size", "digest_algorithm", "digest",
                                                 "request_id"}:
            raise ValueError("fields")
        if leaf["digest_algorithm"] not in DIGESTS:
            raise ValueError("digest_algorithm")
        # BATCH.md: "hex" is lower-case.
        if not re.fullmatch(r"([0-9a-f]{2})+", leaf["digest"]):
            raise ValueError("leaf.digest")
        if not re.fullmatch(r"[0-9a-f]{64}", fingerprint):
            raise ValueError("key_fingerprint")
    except (OSError, ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise Failed("malformed receipt")

    # 1. Key.
    if fingerprint != hashlib.sha256(der).hexdigest():
        raise Failed("key unknown")

    # 2. Note: the first line whose key ID is PUB's names the origin and its signature verifies.
    text, signatures = split_note(note)
    origin = text.split(b"\n", 1)[0].decode("utf-8", "replace")
    key_id = hashlib.sha256(der).digest()[:4]
    mine = [(name, sig) for name, sig in signatures if sig[:4] == key_id]
    if not mine:
        raise Failed("key unknown")
    name, sig = mine[0]
    if name != origin or len(sig) <= 4 or not openssl_verifies(pub_pem, text, sig[4:]):
        raise Failed("signature wrong")

    # 3. Statement.
    statement = parse_statement(text)
    if statement is None or statement[1] != tree_size or statement[3] != batch_id:
        raise Failed("note does not match the receipt")
    root = statement[2]

    # 4. Leaf.
    try:
        computed = hashlib.sha256(b"\x00" + leaf_bytes(leaf)).digest()
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeEncodeError):
        raise Failed("leaf altered")
    if computed != leaf_hash:
        raise Failed("leaf altered")

    # 5. Proof.
    if root_from_proof(leaf_hash, leaf_index, tree_size, proof) != root:
        raise Failed("proof wrong")

    # 6. File.
    try:
        size, digest = file_digest(path, leaf["digest_algorithm"])
    except OSError:
        raise Failed("file changed")
    if size != leaf["size"] or digest != leaf["digest"]:
        raise Failed("file changed")


def read_bundle(path):
    """BATCH.md, "Receipt bundles": one receipt per line; name -> the line's bytes."""
    receipts = {}
    with open(path, "rb") as f:
        for line in f.read().split(b"\n"):
            if line:
                name = json.loads(line.decode("utf-8"))["leaf"]["name"]
                if os.path.normpath(name) in receipts:
                    raise SystemExit("a second receipt for " + name)
                receipts[os.path.normpath(name)] = (name, line)
    return receipts


def main(argv):
    if len(argv) < 3 or (argv[2] == "--bundle" and len(argv) < 4):
        print("usage: verify_receipt.py PUB.pem [--bundle BUNDLE] FILE...", file=sys.stderr)
        return 2
    pub_pem = argv[1]
    der = spki_der(pub_pem)
    bundle = None
    paths = argv[2:]
    if argv[2] == "--bundle":
        bundle = read_bundle(argv[3])
        paths = argv[4:] or [name for name, _ in bundle.values()]
    failed = False
    for path in paths:
        try:
            if bundle is None:
                verify(pub_pem, der, path)
            elif os.path.normpath(path) not in bundle:
                raise Failed("no receipt")
            else:
                verify(pub_pem, der, path, bundle[os.path.normpath(path)][1])
            print("%s: OK" % path)
        except Failed as e:
            failed = True
            print("%s: FAILED (%s)" % (path, e))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
