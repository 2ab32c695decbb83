// The official JS SDK (@dapr/dapr) in gRPC mode against the sidecar: one line of JSON per call, for
// tests/grpc/test_js_sdk.py. The client's start() waits for the sidecar with GetMetadata.
import { DaprClient, CommunicationProtocolEnum } from "@dapr/dapr";

const client = new DaprClient({
  daprHost: "127.0.0.1",
  daprPort: process.env.DAPR_GRPC_PORT,
  communicationProtocol: CommunicationProtocolEnum.GRPC,
});
const key = process.env.KEY;
const out = (name, value) => console.log(JSON.stringify({ name, value }));
await client.state.save("statestore", [{ key, value: { n: 1 } }]);
out("state", await client.state.get("statestore", key));
await client.pubsub.publish("pubsub", key, { hello: "world" });
out("bulk", await client.pubsub.publishBulk("pubsub", key, [{ a: 1 }, { b: 2 }]));
out("lock", await client.lock.lock("lockstore", key, "me", 10));
out("unlock", await client.lock.unlock("lockstore", key, "someone-else"));
out("metadata", (await client.metadata.get()).id);
out("secret", await client.secret.get("secretstore", "db-password"));
await client.stop();
