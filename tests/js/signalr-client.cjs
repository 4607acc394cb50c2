// The real SignalR client for tests/e2e/signalr.rs: connects to a hub with one forced transport
// (negotiation still runs, as a browser's would), calls WhoAmI, then Echo several times one
// after the other and several at once, stops, and prints one JSON line:
//   {"transport":"LongPolling","whoami":"a","echoes":[{"message":"m0","server":"a"},...]}
// Any failure (negotiation, transport, a rejected invocation, the time limit) prints the error
// on stderr and exits 1.
//
//   node signalr-client.cjs URL WebSockets|ServerSentEvents|LongPolling [ECHOES]
//
// HTTPS against a test certificate authority: run with NODE_EXTRA_CA_CERTS=ca.pem.
"use strict";

const signalR = require("@microsoft/signalr");

// The test kills this process when it outlives its own bound; this one makes a stuck client
// say where it was.
const LIMIT_MS = 10000;

async function run(url, transportName, echoes) {
    const transport = signalR.HttpTransportType[transportName];
    if (transport === undefined) {
        throw new Error(`unknown transport ${transportName}`);
    }
    const connection = new signalR.HubConnectionBuilder()
        .withUrl(url, { transport, skipNegotiation: false })
        .configureLogging(signalR.LogLevel.Warning)
        .build();
    await connection.start();
    try {
        const whoami = await connection.invoke("WhoAmI");
        const results = [];
        for (let i = 0; i < echoes; i++) {
            results.push(await connection.invoke("Echo", `m${i}`));
        }
        // Several invocations in flight at once: completions matched by invocation id.
        const concurrent = [];
        for (let i = echoes; i < 2 * echoes; i++) {
            concurrent.push(connection.invoke("Echo", `m${i}`));
        }
        results.push(...(await Promise.all(concurrent)));
        return { transport: transportName, whoami, echoes: results };
    } finally {
        await connection.stop();
    }
}

// Exits once the line is written: writes to a pipe may be asynchronous, and process.exit does
// not wait for them (nor would a natural exit come soon: the client's sockets linger).
function finish(stream, line, code) {
    clearTimeout(timer);
    stream.write(`${line}\n`, () => process.exit(code));
}

const [url, transportName, echoes = "3"] = process.argv.slice(2);
const timer = setTimeout(() => finish(process.stderr, `signalr-client: no result within ${LIMIT_MS} ms`, 1), LIMIT_MS);
run(url, transportName, Number(echoes)).then(
    (result) => finish(process.stdout, JSON.stringify(result), 0),
    (error) => finish(process.stderr, `signalr-client: ${error && error.stack ? error.stack : error}`, 1),
);
