#!/usr/bin/env node
// One call over mutual TLS: Membership.ListMembers with @grpc/grpc-js, presenting a
// client certificate and verifying the agent against a CA. Prints ONE JSON document
// {code, message, members}; tests/interop/test_node_client.py judges it.
//
//   node mtls_call.js HOST:PORT CA_FILE CERT_FILE KEY_FILE [SERVER_NAME]
//
// SERVER_NAME, when given, is the name expected in the agent's certificate instead
// of HOST (grpc-js's grpc.ssl_target_name_override). Exit status 0 whenever the
// program ran to the end, whatever the agent answered.

"use strict";

const fs = require("fs");
const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const PROTO_DIR = path.resolve(__dirname, "..", "..", "..", "protos");
const DEADLINE_MS = 5000;

function main() {
  const [target, caFile, certFile, keyFile, serverName] = process.argv.slice(2);
  const definition = protoLoader.loadSync([path.join("controlplane", "v1", "membership.proto")], {
    includeDirs: [PROTO_DIR],
    keepCase: true,
    enums: String,
    defaults: true,
  });
  const v1 = grpc.loadPackageDefinition(definition).controlplane.v1;
  const credentials = grpc.credentials.createSsl(
    fs.readFileSync(caFile),
    fs.readFileSync(keyFile),
    fs.readFileSync(certFile),
  );
  const options = serverName ? { "grpc.ssl_target_name_override": serverName } : {};
  const client = new v1.Membership(target, credentials, options);
  const deadline = new Date(Date.now() + DEADLINE_MS);
  client.ListMembers({}, { deadline }, (error, response) => {
    const code = error ? grpc.status[error.code] : "OK";
    const members = error ? [] : response.members.map((m) => m.name);
    process.stdout.write(JSON.stringify({ code, message: error ? error.details : "", members }));
    process.stdout.write("\n");
    client.close();
  });
}

main();
