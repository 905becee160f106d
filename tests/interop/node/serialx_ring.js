'use strict';
// A reference ring that places keys as Go's github.com/serialx/hashring does, the
// ring behind Ringman (github.com/Nitro/ringman). It is written from the algorithm
// of serialx/hashring's hashring.go at commit 8b29126 (2019-04-22), the revision
// Ringman's last commit (2019-05-10) was built against (Ringman does not pin it),
// and shares no code with the Python ring it is compared with:
//
// - a node of weight w among N nodes of total weight W gets
//   floor(float64(40 * N * w) / float64(W)) virtual nodes (generateCircle);
// - virtual node j of node "id" is hashed as md5("id-" + decimal(j)), and its
//   digest gives 3 points: bytes 0-3, 4-7 and 8-11, each little-endian uint32;
// - points go into a map point -> node, written node after node in insertion
//   order (a later node overwrites an earlier one on a shared point), and into a
//   sorted slice that keeps duplicates;
// - a key's point is md5(key) bytes 0-3, little-endian; its owner is the node of
//   the first sorted point strictly greater than the key's (sort.Search with
//   `nodes[i] > key`), wrapping to the first point past the last.
//
// Later revisions differ: from 7706f26 (2019-05-15) the digest was taken with
// hasher.Sum(key) without writing the key, and from 2d8e471 (2020-07-16) the ring
// has one 128-bit point per unit of weight. Neither is what Ringman used.
//
// Usage: node serialx_ring.js [SPEC.json]   (reads the spec from stdin without one)
// Spec: {"cases": [{"name": "...",
//   "nodes": ["10.0.0.1:8080", ["10.0.0.2:8080", 2]],  // insertion order; weight 1 if bare
//   "keys": ["k1", "k2"]}]}
// Output (stdout): {"cases": [{"name", "owners", "vnode_counts", "point_count"}]};
// an owner is null when the ring is empty (serialx's ok == false).

const crypto = require('crypto');
const fs = require('fs');

const VNODES = 40; // hard-coded in serialx's generateCircle
const POINTS_PER_VNODE = 3; // ditto: `for i := 0; i < 3; i++`

function md5(text) {
  return crypto.createHash('md5').update(Buffer.from(text, 'utf8')).digest();
}

function buildRing(nodeSpecs) {
  const nodes = [];
  const weights = new Map();
  for (const spec of nodeSpecs) {
    const [id, weight] = Array.isArray(spec) ? spec : [spec, 1];
    if (weights.has(id)) continue; // AddNode of a present node is a no-op
    nodes.push(id);
    weights.set(id, weight);
  }
  let totalWeight = 0;
  for (const id of nodes) totalWeight += weights.get(id);

  const owner = new Map();
  const sorted = [];
  const vnodeCounts = {};
  for (const id of nodes) {
    // 40 * N * w is an exact integer below 2**53 here, as Go's int is; the
    // division is one correctly rounded binary64 operation, as in Go.
    const factor = Math.floor((VNODES * nodes.length * weights.get(id)) / totalWeight);
    vnodeCounts[id] = factor;
    for (let j = 0; j < factor; j++) {
      const digest = md5(`${id}-${j}`);
      for (let i = 0; i < POINTS_PER_VNODE; i++) {
        const point = digest.readUInt32LE(i * 4);
        owner.set(point, id);
        sorted.push(point);
      }
    }
  }
  sorted.sort((a, b) => a - b);
  return { owner, sorted, vnodeCounts };
}

function getNode(ring, key) {
  const { owner, sorted } = ring;
  if (sorted.length === 0) return null;
  const point = md5(key).readUInt32LE(0);
  // sort.Search: the smallest index whose point is strictly greater than the key's.
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (sorted[middle] > point) high = middle;
    else low = middle + 1;
  }
  return owner.get(sorted[low === sorted.length ? 0 : low]);
}

function runCase(spec) {
  const ring = buildRing(spec.nodes);
  return {
    name: spec.name,
    owners: spec.keys.map((key) => getNode(ring, key)),
    vnode_counts: ring.vnodeCounts,
    point_count: ring.sorted.length,
  };
}

const input = process.argv[2] ? fs.readFileSync(process.argv[2], 'utf8') : fs.readFileSync(0, 'utf8');
const spec = JSON.parse(input);
process.stdout.write(JSON.stringify({ cases: spec.cases.map(runCase) }));
