// The "checkout" app of the two-app demo: Dapr's official JavaScript SDK (@dapr/dapr) against a Layotto
// sidecar, unchanged. It accepts orders invoked by the "orders" app (service invocation), and for each order
// published on the `orders` topic ($EVENTS_PUBSUB: Kafka in the compose stack) it saves a checkout record in
// its state store (PostgreSQL in the compose stack) and publishes a receipt on `receipts`.
//
//   POSTGRES_CONNECTION_STRING='host=localhost user=postgres' KAFKA_BROKERS=localhost:9092 \
//       layotto run --app-id checkout --app-port 6002 -d component_specs/postgresql -d component_specs/kafka \
//       node examples/node/app.js
//
// (with Redis only: EVENTS_PUBSUB=pubsub and -d component_specs/redis; examples/dapr.yaml runs both apps so)
"use strict";

const { DaprServer, HttpMethod, CommunicationProtocolEnum } = require("@dapr/dapr");

const STATE = "statestore";
const EVENTS = process.env.EVENTS_PUBSUB || "kafka-pubsub"; // any pub/sub both sidecars share

async function main() {
  const server = new DaprServer({
    serverHost: "127.0.0.1",
    serverPort: process.env.APP_PORT || "6002",
    communicationProtocol: CommunicationProtocolEnum.HTTP,
    clientOptions: { daprHost: "127.0.0.1", daprPort: process.env.DAPR_HTTP_PORT || "3500" },
  });
  const client = server.client;

  await server.invoker.listen(
    "checkout",
    async ({ body }) => {
      const order = JSON.parse(body || "{}");
      console.log(`checkout: accepted order ${order.orderId}`);
      return { orderId: order.orderId, status: "accepted", by: "checkout" };
    },
    { method: HttpMethod.POST },
  );

  await server.pubsub.subscribe(EVENTS, "orders", async (order) => {
    await client.state.save(STATE, [{ key: `checkout-${order.orderId}`, value: { ...order, paid: true } }]);
    await client.pubsub.publish(EVENTS, "receipts", { orderId: order.orderId, paid: true });
    console.log(`checkout: paid order ${order.orderId}`);
  });

  await server.start();
  console.log("checkout: started");
  const stop = async () => {
    await server.stop();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
