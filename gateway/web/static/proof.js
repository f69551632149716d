// Verify a log entry's inclusion proof in the browser (RFC 9162, section 2.1.3.2) with
// WebCrypto SHA-256, against the root hash in the signed checkpoint shown on the page.
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
    return data.entry !== null;
  }

  async function run() {
    const status = document.getElementById("proof-status");
    const holder = document.getElementById("proof-data");
    if (!status || !holder) return;
    status.className = "proof-result";
    status.textContent = "Verifying in your browser…";
    try {
      const hashedEntry = await verify(JSON.parse(holder.textContent));
      status.classList.add("ok");
      status.textContent = "✓ Verified in your browser: " +
        (hashedEntry ? "the entry shown" : "the leaf") +
        " is included in the signed checkpoint (RFC 9162 inclusion proof, SHA-256).";
      status.dataset.verified = "true";
    } catch (err) {
      status.classList.add("bad");
      status.textContent = "✗ Proof did not verify: " + err.message;
      status.dataset.verified = "false";
    }
  }

  window.tiergateProof = { rootFromInclusion, parseCheckpoint, verify };
  document.addEventListener("DOMContentLoaded", () => {
    const again = document.getElementById("verify-proof");
    if (again) { again.hidden = false; again.addEventListener("click", run); }
    run();
  });
})();
