/**
 * The official `@a2a-js/sdk` client for an org's agent over one binding, for tests: built
 * from a card naming that binding only, its requests carry the org's test API key and go to
 * the Worker (or to `target`, a stand-in that handles them as the routes do).
 */
import type { AgentCard } from "@a2a-js/sdk";
import { ClientFactory, JsonRpcTransportFactory, RestTransportFactory, type Client } from "@a2a-js/sdk/client";
import { keyOf, worker } from "./helpers";

export type Binding = "JSONRPC" | "HTTP+JSON";
export const BINDINGS: Binding[] = ["JSONRPC", "HTTP+JSON"];

export function sdkClient(slug: string, agentName: string, binding: Binding, target: (req: Request) => Promise<Response> = (req) => worker.fetch(req)): Promise<Client> {
  const url = `http://${slug}.localhost/a2a/agents/${agentName}`;
  const fetchImpl: typeof fetch = (input, init) => {
    const req = new Request(input, init);
    const headers = new Headers(req.headers);
    headers.set("authorization", `Bearer ${keyOf(slug)}`);
    return target(new Request(req, { headers }));
  };
  const card = {
    name: agentName,
    description: agentName,
    version: "1",
    supportedInterfaces: [{ url, protocolBinding: binding, protocolVersion: "1.0", tenant: "" }],
    // extendedAgentCard: the client's getAgentCard() asks the agent for its extended card.
    capabilities: { streaming: true, pushNotifications: true, extensions: [], extendedAgentCard: true },
    defaultInputModes: ["text/plain"],
    defaultOutputModes: ["text/plain"],
    skills: [],
    securitySchemes: {},
    securityRequirements: [],
    signatures: [],
  } as unknown as AgentCard;
  return new ClientFactory({ transports: [new JsonRpcTransportFactory({ fetchImpl }), new RestTransportFactory({ fetchImpl })] }).createFromAgentCard(card);
}
