// Verify a log entry's inclusion proof in the browser (RFC 9162, section 2.1.3.2) with
// WebCrypto SHA-256, against the root hash in the checkpoint shown on the page, and the
// checkpoint's Ed25519 note signature against the log key the page shows (WebCrypto Ed25519).
// What the browser could not check is said on the page, never passed over.
"use strict";
(function () {
  const enc = new TextEncoder();
  const b64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  const concat = (...parts) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  };
  const sha256 = async (bytes) => new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  const leafHash = (entry) => sha256(concat(Uint8Array.of(0), enc.encode(entry)));
  const nodeHash = (l, r) => sha256(concat(Uint8Array.of(1), l, r));
  const equal = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);

  // RFC 9162 2.1.3.2: fn/sn walk up from the leaf; the path must be used up exactly.
  async function rootFromInclusion(index, size, leaf, path) {
    if (index >= size) throw new Error("index outside the tree");
    let fn = BigInt(index), sn = BigInt(size) - 1n;
    let r = leaf;
    for (const p of path) {
      if (sn === 0n) throw new Error("proof is too long");
      if ((fn & 1n) === 1n || fn === sn) {
        r = await nodeHash(p, r);
        if ((fn & 1n) === 0n) {
          while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
        }
      } else {
        r = await nodeHash(r, p);
      }
      fn >>= 1n; sn >>= 1n;
    }
    if (sn !== 0n) throw new Error("proof is too short");
    return r;
  }

  // A C2SP signed note: origin, tree size, base64 root hash, blank line, signatures.
  function parseCheckpoint(note) {
    const lines = note.split("\n");
    const size = BigInt(lines[1]);
    return { origin: lines[0], size, root: b64(lines[2]) };
  }

  const hexBytes = (h) => Uint8Array.from(h.match(/../g) || [], (x) => parseInt(x, 16));

  // C2SP signed note: the body runs to the last blank line; then "— NAME BASE64" lines whose
  // base64 is keyid(4) || Ed25519 signature(64) over the body's bytes.
  function splitNote(note) {
    const at = note.lastIndexOf("\n\n");
    if (at < 0) throw new Error("the checkpoint is not a signed note");
    const sigs = note.slice(at + 2).split("\n").filter((l) => l.length > 0).map((line) => {
      const m = /^\u2014 (\S+) (\S+)$/.exec(line);
      if (!m) throw new Error("a signature line of the checkpoint is malformed");
      return { name: m[1], raw: b64(m[2]) };
    });
    return { body: note.slice(0, at + 1), sigs };
  }

  // The log's verifier key: NAME+HEXID+BASE64(0x01 || Ed25519 public key).
  function parseVkey(vkey) {
    // The base64 part may itself contain "+": split at the first two only.
    const m = /^([^+\s]+)\+([0-9a-f]{8})\+([A-Za-z0-9+/=]+)$/.exec(vkey.trim());
    if (!m) throw new Error("the log key is not a note verifier key");
    const key = b64(m[3]);
    if (key.length !== 33 || key[0] !== 1) throw new Error("the log key is not an Ed25519 key");
    return { name: m[1], id: hexBytes(m[2]), pub: key.slice(1) };
  }

  // "verified", or "unsupported" when this browser's WebCrypto has no Ed25519; throws when
  // the signature is missing or wrong.
  async function verifyCheckpointSignature(note, vkey, origin) {
    const { body, sigs } = splitNote(note);
    const key = parseVkey(vkey);
    if (key.name !== origin) throw new Error("the log key is not named after the checkpoint");
    const mine = sigs.filter((s) => s.name === key.name && s.raw.length === 68 &&
      equal(s.raw.slice(0, 4), key.id));
    if (mine.length === 0) throw new Error("the checkpoint carries no signature by the log key");
    let imported;
    try {
      imported = await crypto.subtle.importKey("raw", key.pub, { name: "Ed25519" }, false,
        ["verify"]);
    } catch (err) {
      return "unsupported";
    }
    for (const s of mine) {
      if (await crypto.subtle.verify({ name: "Ed25519" }, imported, s.raw.slice(4),
        enc.encode(body))) return "verified";
    }
    throw new Error("the checkpoint's signature does not verify against the log key");
  }

  async function verify(data) {
    const cp = parseCheckpoint(data.checkpoint);
    if (cp.size !== BigInt(data.tree_size)) throw new Error("proof is for another tree size");
    const leaf = data.entry !== null ? await leafHash(data.entry) : b64(data.leaf_hash);
    if (data.entry !== null && !equal(leaf, b64(data.leaf_hash))) {
      throw new Error("the entry does not hash to its leaf");
    }
    const root = await rootFromInclusion(
      data.index, data.tree_size, leaf, data.inclusion_path.map(b64));
    if (!equal(root, cp.root)) throw new Error("computed root differs from the checkpoint");
    const signature = data.vkey
      ? await verifyCheckpointSignature(data.checkpoint, data.vkey, cp.origin)
      : "no-key";
    return { hashedEntry: data.entry !== null, signature };
  }

  async function run() {
    const status = document.getElementById("proof-status");
    const holder = document.getElementById("proof-data");
    if (!status || !holder) return;
    status.className = "proof-result";
    status.textContent = "Verifying in your browser…";
    try {
      const got = await verify(JSON.parse(holder.textContent));
      const what = got.hashedEntry ? "the entry shown" : "the leaf";
      let text = "✓ Verified in your browser: " + what + " is included in the checkpoint " +
        "(RFC 9162 inclusion proof, SHA-256)";
      if (got.signature === "verified") {
        text += ", and the checkpoint's Ed25519 signature verifies against the log key shown " +
          "(the key this gateway publishes: compare it with one you got elsewhere).";
        status.classList.add("ok");
        status.dataset.verified = "true";
      } else {
        text += ". Not checked: the checkpoint's signature (" +
          (got.signature === "unsupported" ? "this browser's WebCrypto has no Ed25519"
            : "no log key on this page") +
          "); check it with tiergate log verify.";
        status.classList.add("partial");
        status.dataset.verified = "partial";
      }
      status.dataset.signature = got.signature;
      status.textContent = text;
    } catch (err) {
      status.classList.add("bad");
      status.textContent = "✗ Proof did not verify: " + err.message;
      status.dataset.verified = "false";
    }
  }

  window.tiergateProof = {
    rootFromInclusion, parseCheckpoint, verify, verifyCheckpointSignature, splitNote, parseVkey,
  };
  document.addEventListener("DOMContentLoaded", () => {
    const again = document.getElementById("verify-proof");
    if (again) { again.hidden = false; again.addEventListener("click", run); }
    run();
  });
})();
