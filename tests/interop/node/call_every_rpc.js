#!/usr/bin/env node
// Calls every unary RPC of controlplane.v1.Membership, ServerPool and Ring (and
// Keyring.ListKeys) on a running agent with @grpc/grpc-js, reads the first
// message(s) of one server stream per service that has streams, and prints ONE
// JSON document on stdout: for each call its status code name, its message and
// decoded google.rpc.Status details when it failed, and the answer when it
// succeeded. It judges nothing: tests/interop/test_node_client.py does.
//
//   node call_every_rpc.js HOST:PORT
//
// The stubs come from the repository's protos/ directory, loaded at run time
// with @grpc/proto-loader; the channel uses clients/service_config.json, the
// service config shipped for clients in other languages. Every call has a
// deadline; every stream is cancelled after its first message(s). The exit
// status is 0 whenever the program ran to the end, whatever the agent answered.
//
// The order matters: state-changing calls come after the reads they would
// disturb, and Membership.Leave (which makes the agent leave and stop) is last.

"use strict";

const fs = require("fs");
const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const REPO = path.resolve(__dirname, "..", "..", "..");
const PROTO_DIR = path.join(REPO, "protos");
const SERVICE_CONFIG = path.join(REPO, "clients", "service_config.json");
const PROTO_FILES = ["membership", "server_pool", "ring", "keyring"].map((name) =>
  path.join("controlplane", "v1", `${name}.proto`),
);

const UNARY_DEADLINE_MS = 5000;
const LEAVE_DEADLINE_MS = 15000;
const STREAM_DEADLINE_MS = 10000;

const CLIENT_ID = "node-interop-client";
const POOL = "node-interop";
const UNKNOWN_POOL = "node-interop-no-such-pool";
const MEMBER_RING = "cache";
const REGISTERED_RING = "node-interop";
const EMPTY_RING = "node-interop-empty";
const USER_EVENT = "node-interop-deploy";
const RING_KEYS = ["user:1", "user:42", "session:abc", "cart/7", "k-0", "k-1", "k-2", "k-3"];
const REGISTERED_NODES = [
  { address: "10.0.0.1", port: 11211, weight: 1, metadata: { zone: "a" } },
  { address: "10.0.0.2", port: 11211, weight: 2, metadata: { zone: "b" } },
  { address: "10.0.0.3", port: 11211, weight: 1, metadata: {} },
];
const REMOVED_NODE = { address: "10.0.0.9", port: 11211, weight: 1, metadata: {} };

// ------------------------------------------------------------------ status details

// google.rpc.Status travels in the `grpc-status-details-bin` trailer. Its few
// messages are decoded here with a minimal protobuf reader rather than by loading
// googleapis protos, so the program needs nothing beyond protos/.
function readFields(buffer) {
  const fields = [];
  let offset = 0;
  const varint = () => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      const byte = buffer[offset++];
      if (byte === undefined) throw new Error("truncated varint");
      result |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return result;
      shift += 7n;
    }
  };
  while (offset < buffer.length) {
    const key = Number(varint());
    const number = key >>> 3;
    const wireType = key & 7;
    if (wireType === 0) fields.push({ number, value: varint() });
    else if (wireType === 2) {
      const length = Number(varint());
      fields.push({ number, value: buffer.subarray(offset, offset + length) });
      offset += length;
    } else if (wireType === 1) offset += 8;
    else if (wireType === 5) offset += 4;
    else throw new Error(`unsupported wire type ${wireType}`);
  }
  return fields;
}

const text = (fields, number) => {
  const field = fields.find((f) => f.number === number);
  return field ? Buffer.from(field.value).toString("utf8") : "";
};

function decodeAny(bytes) {
  const fields = readFields(bytes);
  const typeUrl = text(fields, 1);
  const value = (fields.find((f) => f.number === 2) || { value: Buffer.alloc(0) }).value;
  const type = typeUrl.slice(typeUrl.lastIndexOf("/") + 1);
  const inner = readFields(value);
  if (type === "google.rpc.BadRequest") {
    return {
      type,
      field_violations: inner
        .filter((f) => f.number === 1)
        .map((f) => {
          const violation = readFields(f.value);
          return { field: text(violation, 1), description: text(violation, 2) };
        }),
    };
  }
  if (type === "google.rpc.ErrorInfo") {
    return { type, reason: text(inner, 1), domain: text(inner, 2) };
  }
  return { type };
}

function statusDetails(error) {
  const raw = error.metadata ? error.metadata.get("grpc-status-details-bin") : [];
  if (!raw || raw.length === 0) return null;
  const fields = readFields(Buffer.from(raw[0]));
  const code = fields.find((f) => f.number === 1);
  return {
    code: code ? Number(code.value) : 0,
    message: text(fields, 2),
    details: fields.filter((f) => f.number === 3).map((f) => decodeAny(f.value)),
  };
}

const codeName = (code) =>
  Object.keys(grpc.status).find((name) => grpc.status[name] === code) || String(code);

function failure(error) {
  return {
    code: codeName(error.code),
    message: error.details,
    status: statusDetails(error),
  };
}

// ------------------------------------------------------------------------- calls

const results = {};

function deadline(ms) {
  return new Date(Date.now() + ms);
}

// Calls a unary RPC and records it under `label` (the RPC name unless given).
function unary(client, service, method, request, label, deadlineMs = UNARY_DEADLINE_MS) {
  const key = label || `${service}.${method}`;
  return new Promise((resolve) => {
    client[method](request, { deadline: deadline(deadlineMs) }, (error, response) => {
      const outcome = error
        ? { rpc: `${service}.${method}`, request, ...failure(error) }
        : { rpc: `${service}.${method}`, request, code: "OK", response };
      results[key] = outcome;
      resolve(outcome);
    });
  });
}

// Opens a server stream, keeps its first `count` messages, then cancels it.
// `whileOpen` runs once the call is started (to make the stream produce messages).
function stream(client, service, method, request, { count = 1, label, whileOpen } = {}) {
  const key = label || `${service}.${method}`;
  return new Promise((resolve) => {
    const call = client[method](request, { deadline: deadline(STREAM_DEADLINE_MS) });
    const messages = [];
    let settled = false;
    let keepGoing = true;
    const finish = (outcome) => {
      if (settled) return;
      settled = true;
      keepGoing = false;
      results[key] = { rpc: `${service}.${method}`, request, ...outcome };
      resolve(results[key]);
    };
    call.on("data", (message) => {
      messages.push(message);
      if (messages.length >= count) {
        finish({ code: "OK", messages, cancelled_by_client: true });
        call.cancel();
      }
    });
    call.on("error", (error) => {
      if (error.code === grpc.status.CANCELLED && settled) return;
      finish({ ...failure(error), messages });
    });
    call.on("end", () => finish({ code: "OK", messages, ended_by_server: true }));
    if (whileOpen) whileOpen(() => keepGoing).catch(() => undefined);
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function main() {
  const target = process.argv[2];
  if (!target) {
    process.stderr.write("usage: node call_every_rpc.js HOST:PORT\n");
    process.exit(2);
  }
  const definition = protoLoader.loadSync(PROTO_FILES, {
    includeDirs: [PROTO_DIR],
    keepCase: true,
    longs: String,
    enums: String,
    bytes: String,
    defaults: true,
    oneofs: true,
  });
  const v1 = grpc.loadPackageDefinition(definition).controlplane.v1;
  const serviceConfig = fs.readFileSync(SERVICE_CONFIG, "utf8");
  const options = {
    "grpc.service_config": serviceConfig,
    "grpc.keepalive_time_ms": 20000,
    "grpc.keepalive_timeout_ms": 10000,
  };
  const credentials = grpc.credentials.createInsecure();
  const membership = new v1.Membership(target, credentials, options);
  const serverPool = new v1.ServerPool(target, credentials, options);
  const ring = new v1.Ring(target, credentials, options);
  const keyring = new v1.Keyring(target, credentials, options);
  const M = (method, request, label, ms) => unary(membership, "Membership", method, request, label, ms);
  const P = (method, request, label) => unary(serverPool, "ServerPool", method, request, label);
  const R = (method, request, label) => unary(ring, "Ring", method, request, label);

  // ---------------------------------------------------------------- Membership
  const local = await M("GetLocalMember", {});
  const localName = local.code === "OK" ? local.response.member.name : "";
  const members = await M("ListMembers", {});
  await M("GetCoordinate", {});
  await M("GetCoordinate", { node: "no-such-node" }, "Membership.GetCoordinate[unknown]");
  await M("ListMembers", { tags: { ring: MEMBER_RING } }, "Membership.ListMembers[tags ring=cache]");
  await M(
    "ListMembers",
    { statuses: ["MEMBER_STATUS_ALIVE"], name_pattern: localName.replace(/\./g, "\\.") },
    "Membership.ListMembers[alive, local name]",
  );
  await M("ListMembers", { name_pattern: "(" }, "Membership.ListMembers[bad pattern]");
  await stream(membership, "Membership", "WatchMembers", {});

  const others = members.code === "OK"
    ? members.response.members.filter(
        (m) => m.name !== localName && m.status === "MEMBER_STATUS_ALIVE",
      )
    : [];
  await M(
    "Join",
    { addresses: others.map((m) => `${m.address}:${m.port}`), replay_events: false },
  );
  await M("Join", { addresses: [] }, "Membership.Join[no addresses]");

  await M(
    "UpdateTags",
    { set: { lang: "node", scratch: "1" }, delete: ["scratch"] },
  );

  // WatchEvents sends nothing until an event happens: fire user events while the
  // stream is open until one comes through (the first may precede the subscription).
  const fired = [];
  await stream(
    membership,
    "Membership",
    "WatchEvents",
    { types: ["EVENT_TYPE_USER"], user_event_name: USER_EVENT },
    {
      whileOpen: async (open) => {
        for (let i = 0; i < 40 && open(); i += 1) {
          const outcome = await M(
            "FireUserEvent",
            { name: USER_EVENT, payload: Buffer.from(`payload-${i}`).toString("base64"), coalesce: false },
            i === 0 ? undefined : `Membership.FireUserEvent[${i}]`,
          );
          fired.push(outcome.code === "OK" ? outcome.response.lamport_time : outcome.code);
          await sleep(200);
        }
      },
    },
  );
  results["Membership.FireUserEvent[all fired while watching]"] = {
    rpc: "Membership.FireUserEvent",
    code: "OK",
    lamport_times: fired,
  };
  await M("FireUserEvent", { name: "", payload: "" }, "Membership.FireUserEvent[empty name]");
  await M("ForceLeave", { name: "node-interop-no-such-member", prune: false });
  await M("ForceLeave", { name: "" }, "Membership.ForceLeave[empty name]");
  if (others.length > 0) {
    await M("ForceLeave", { name: others[0].name }, "Membership.ForceLeave[alive member]");
  }
  await M("GetLeader", {});
  await M("GetLeaderHistory", {});
  await stream(membership, "Membership", "WatchLeader", {});
  await M("GetInfo", {});
  // A tag change is logged at debug: changed until the monitor has read a line.
  await stream(membership, "Membership", "Monitor", { log_level: "debug" }, {
    whileOpen: async (open) => {
      for (let n = 0; open() && n < 50; n += 1) {
        await M("UpdateTags", { set: { monitored: `${n}` } }, "Membership.UpdateTags[monitored]");
        await sleep(100);
      }
    },
  });
  await stream(membership, "Membership", "Monitor", { log_level: "loud" }, {
    label: "Membership.Monitor[bad level]",
  });

  // Queries: the agent asks itself (filter_nodes: its own name) while this client
  // watches; RespondQuery answers, and the Query stream carries the response, then
  // ends with done when the timeout passes.
  const QUERY = "node-interop-query";
  const watchRequest = { names: [QUERY] };
  const watchedQuery = new Promise((resolve) => {
    const call = membership.WatchQueries(watchRequest, { deadline: deadline(STREAM_DEADLINE_MS) });
    const messages = [];
    const rpc = "Membership.WatchQueries";
    call.on("data", (message) => {
      messages.push(message);
      results[rpc] = { rpc, request: watchRequest, code: "OK", messages, cancelled_by_client: true };
      call.cancel();
      resolve(message);
    });
    call.on("error", (error) => {
      if (error.code === grpc.status.CANCELLED && messages.length > 0) return;
      results[rpc] = { rpc, request: watchRequest, ...failure(error), messages };
      resolve(null);
    });
  });
  await sleep(500); // the watch is registered before the query goes out
  const asked = stream(
    membership,
    "Membership",
    "Query",
    {
      name: QUERY,
      payload: Buffer.from("ping").toString("base64"),
      filter_nodes: [localName],
      request_ack: true,
      timeout: { seconds: 3, nanos: 0 },
    },
    { count: 100 },
  );
  const received = await watchedQuery;
  const pong = Buffer.from("pong").toString("base64");
  if (received) {
    await M("RespondQuery", { id: received.id, payload: pong });
  } else {
    results["Membership.RespondQuery"] = {
      rpc: "Membership.RespondQuery",
      code: "NOT_CALLED",
      note: "WatchQueries received no query",
    };
  }
  await asked;
  await M("RespondQuery", { id: received ? received.id : "0", payload: pong }, "Membership.RespondQuery[again]");
  await stream(membership, "Membership", "Query", { name: QUERY, relay_factor: 9 }, {
    label: "Membership.Query[relay factor 9]",
  });

  // ---------------------------------------------------------------- ServerPool
  results["ServerPool.(streams)"] = {
    rpc: "ServerPool",
    code: "NOT_CALLED",
    note: "ServerPool has no server-streaming RPCs",
  };
  const heartbeat = await P("Heartbeat", {
    client_id: CLIENT_ID,
    api_version: { major: 1, minor: 0 },
    metadata: { lang: "node" },
  });
  await P("Heartbeat", { client_id: "" }, "ServerPool.Heartbeat[empty client_id]");
  await P("ListClients", {});
  const servers = heartbeat.code === "OK" ? heartbeat.response.servers : [];
  await P("RefreshServerLists", {
    pool: POOL,
    servers,
    num_nodes: heartbeat.code === "OK" ? heartbeat.response.num_nodes : 0,
    leader_address: "",
    api_version: { major: 1, minor: 0 },
  });
  await P("SetBackupServers", {
    pool: POOL,
    servers: [{ name: "node-interop-backup", address: "127.0.0.1:1", api_version: { major: 1, minor: 0 } }],
  });
  await P("AddServer", {
    pool: POOL,
    server: { name: "node-interop-added", address: "127.0.0.1:2", api_version: { major: 1, minor: 0 } },
  });
  await P(
    "AddServer",
    { pool: POOL, server: { name: "node-interop-added", address: "127.0.0.1:3" } },
    "ServerPool.AddServer[known]",
  );
  await P("AddServer", { pool: POOL, server: { name: "x" } }, "ServerPool.AddServer[no address]");
  await P("RemoveServer", { pool: POOL, address: "127.0.0.1:3" });
  await P("RemoveServer", { pool: POOL, address: "127.0.0.1:3" }, "ServerPool.RemoveServer[again]");
  const head = await P("FindServer", { pool: POOL });
  await P(
    "NotifyFailedServer",
    { pool: POOL, address: head.code === "OK" ? head.response.server.address : "" },
  );
  await P("FindServer", { pool: POOL }, "ServerPool.FindServer[after failure]");
  await P("ListServers", { pool: POOL });
  await P("RebalanceServers", { pool: POOL });
  await P("ListServers", { pool: POOL }, "ServerPool.ListServers[after rebalance]");
  await P(
    "NotifyFailedServer",
    { pool: UNKNOWN_POOL, address: "127.0.0.1:1" },
    "ServerPool.NotifyFailedServer[unknown pool]",
  );
  await P("FindServer", { pool: UNKNOWN_POOL }, "ServerPool.FindServer[unknown pool]");

  // ---------------------------------------------------------------------- Ring
  await R("GetNode", { ring: EMPTY_RING, key: "user:1" }, "Ring.GetNode[empty ring]");
  await R("ListNodes", { ring: MEMBER_RING });
  await R("GetRing", { ring: MEMBER_RING });
  await stream(ring, "Ring", "WatchRing", { ring: MEMBER_RING });
  for (const key of RING_KEYS) {
    await R("GetNode", { ring: MEMBER_RING, key }, `Ring.GetNode[${MEMBER_RING} ${key}]`);
  }
  await R("GetNodes", { ring: MEMBER_RING, key: "user:1", count: 3 });
  await R("GetNodes", { ring: MEMBER_RING, key: "user:1", count: 0 }, "Ring.GetNodes[count 0]");

  for (const node of REGISTERED_NODES) {
    await R("AddNode", { ring: REGISTERED_RING, ...node }, `Ring.AddNode[${node.address}:${node.port}]`);
  }
  await R("AddNode", { ring: REGISTERED_RING, ...REMOVED_NODE });
  await R("AddNode", { ring: REGISTERED_RING, address: "", port: 0 }, "Ring.AddNode[no address]");
  const removedId = `${REMOVED_NODE.address}:${REMOVED_NODE.port}`;
  await R("RemoveNode", { ring: REGISTERED_RING, id: removedId });
  await R("RemoveNode", { ring: REGISTERED_RING, id: removedId }, "Ring.RemoveNode[again]");
  const cacheNodes = results["Ring.ListNodes"].code === "OK" ? results["Ring.ListNodes"].response.nodes : [];
  if (cacheNodes.length > 0) {
    await R(
      "RemoveNode",
      { ring: MEMBER_RING, id: cacheNodes[0].id },
      "Ring.RemoveNode[membership node]",
    );
  }
  await R("GetRing", { ring: REGISTERED_RING }, `Ring.GetRing[${REGISTERED_RING}]`);
  for (const key of RING_KEYS) {
    await R("GetNode", { ring: REGISTERED_RING, key }, `Ring.GetNode[${REGISTERED_RING} ${key}]`);
  }
  await R(
    "GetNodes",
    { ring: REGISTERED_RING, key: "user:1", count: 5 },
    `Ring.GetNodes[${REGISTERED_RING}]`,
  );

  // ------------------------------------------------------------------- Keyring
  await unary(keyring, "Keyring", "ListKeys", {});

  // --------------------------------------------------- Leave, last: the agent stops
  await M("Leave", {}, undefined, LEAVE_DEADLINE_MS);

  for (const client of [membership, serverPool, ring, keyring]) client.close();
  const packageVersion = (name) =>
    JSON.parse(fs.readFileSync(require.resolve(`${name}/package.json`), "utf8")).version;
  const document = {
    target,
    local_member: localName,
    ring_keys: RING_KEYS,
    member_ring: MEMBER_RING,
    registered_ring: REGISTERED_RING,
    registered_nodes: REGISTERED_NODES,
    removed_node: removedId,
    client_id: CLIENT_ID,
    pool: POOL,
    user_event: USER_EVENT,
    versions: {
      node: process.versions.node,
      "@grpc/grpc-js": packageVersion("@grpc/grpc-js"),
      "@grpc/proto-loader": packageVersion("@grpc/proto-loader"),
    },
    calls: results,
  };
  process.stdout.write(`${JSON.stringify(document, null, 2)}\n`);
}

main().catch((error) => {
  process.stderr.write(`call_every_rpc.js failed: ${error && error.stack ? error.stack : error}\n`);
  process.exit(1);
});
