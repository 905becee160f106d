'use strict';
// Places keys with the npm `hashring` package (its default ketama-style ring) so
// tests/interop/test_ring_hashring_node.py can compare every owner with the
// Python HashRing.
//
// Usage: node ring.js [SPEC.json]   (reads the spec from stdin without an argument)
//
// Spec: {"cases": [{
//   "name": "...",
//   "nodes": [["node-a", 1], ["node-b", 3]],      // [id, weight] in insertion order
//   "settings": {"vnodes": 40, "points_per_vnode": 4},  // optional; hashring's defaults
//   "keys": ["k1", "k2"]                           // explicit keys, and/or
//   "key_rule": {"prefix": "key-", "start": 0, "count": 100000, "suffix": ""},
//   "ranges": {"count": 1000, "size": 3}           // optional: range() for the first keys
// }]}
// Output (stdout): {"hashring_version": "...", "cases": [{"name", "owners",
//   "vnode_counts", "ranges"}]}

const fs = require('fs');
const HashRing = require('hashring');

function keysOf(spec) {
  const keys = Array.isArray(spec.keys) ? spec.keys.slice() : [];
  const rule = spec.key_rule;
  if (rule) {
    const start = rule.start || 0;
    for (let i = start; i < start + rule.count; i++) {
      keys.push(`${rule.prefix || ''}${i}${rule.suffix || ''}`);
    }
  }
  return keys;
}

function runCase(spec) {
  const servers = {};
  for (const [id, weight] of spec.nodes) servers[id] = weight;
  const options = {};
  const settings = spec.settings || {};
  // hashring names these "vnode count" and "replicas" (points per virtual node).
  // It always derives vnode counts in floating point, whatever vnode_formula says.
  if (settings.vnodes !== undefined) options['vnode count'] = settings.vnodes;
  if (settings.points_per_vnode !== undefined) options.replicas = settings.points_per_vnode;
  const ring = new HashRing(servers, 'md5', options);

  const keys = keysOf(spec);
  const owners = keys.map((key) => ring.get(key));

  const vnodeCounts = {};
  const points = ring.points();
  for (const id of Object.keys(points)) {
    vnodeCounts[id] = points[id].length / ring.replicas;
  }

  let ranges = [];
  if (spec.ranges) {
    ranges = keys.slice(0, spec.ranges.count).map((key) => ring.range(key, spec.ranges.size));
  }
  return { name: spec.name, owners, vnode_counts: vnodeCounts, ranges };
}

function main() {
  const source = process.argv[2] ? fs.readFileSync(process.argv[2], 'utf8') : fs.readFileSync(0, 'utf8');
  const spec = JSON.parse(source);
  const result = {
    hashring_version: require('hashring/package.json').version,
    cases: spec.cases.map(runCase),
  };
  process.stdout.write(JSON.stringify(result));
}

main();
