/**
 * The platform tools every agent gets, with the JSON Schemas the model sees and zod
 * schemas that check the arguments it gives (a call whose arguments fail is answered with
 * an error the model reads, never a crashed step). `call_agent`'s description lists the
 * agents the caller may call, one `- \`Name\`: description` line each.
 */
import { jsonSchema, type ToolSet } from "ai";
import { z } from "zod";

export const PLATFORM_TOOL_NAMES = [
  "call_agent",
  "complete_agent_execution",
  "request_user_input",
  "run_data_write",
  "run_data_read",
  "run_data_query",
  "run_data_list",
  "run_data_delete",
] as const;

const Json = z.json();

export const TOOL_ARGS: Record<string, z.ZodType> = {
  call_agent: z
    .object({
      agent: z.string().min(1).max(300),
      input: z.string().max(256 * 1024),
      context: z.string().max(64 * 1024).optional(),
      /** An external agent's task that asked for input: the input answers it. */
      taskId: z.string().min(1).max(256).optional(),
      contextId: z.string().min(1).max(256).optional(),
    })
    .strict(),
  complete_agent_execution: z.object({ result: z.string().max(256 * 1024), status: z.enum(["SUCCESS", "PARTIAL", "FAILED"]), summary: z.string().max(4_000).optional() }).strict(),
  request_user_input: z
    .object({ prompt: z.string().min(1).max(4_000), inputType: z.enum(["text", "choice", "approval"]), choices: z.array(z.string().max(200)).max(50).optional() })
    .strict()
    .refine((a) => a.inputType !== "choice" || (a.choices?.length ?? 0) > 0, "inputType 'choice' needs choices"),
  run_data_write: z.object({ key: z.string().min(1).max(256), value: Json, tags: z.array(z.string().max(100)).max(20).optional() }).strict(),
  run_data_read: z.object({ key: z.string().min(1).max(256) }).strict(),
  run_data_query: z.object({ tag: z.string().max(100).optional(), prefix: z.string().max(256).optional() }).strict(),
  run_data_list: z.object({}).strict(),
  run_data_delete: z.object({ key: z.string().min(1).max(256) }).strict(),
};

/** Checks a tool call's arguments: the parsed arguments, or an error message for the model. */
export function checkToolArgs(name: string, args: unknown): { ok: true; args: unknown } | { ok: false; error: string } {
  const schema = TOOL_ARGS[name];
  if (!schema) return { ok: false, error: `unknown tool '${name}'` };
  const parsed = schema.safeParse(args ?? {});
  if (parsed.success) return { ok: true, args: parsed.data };
  const issues = parsed.error.issues.slice(0, 5).map((i) => `${i.path.join(".") || "arguments"}: ${i.message}`);
  return { ok: false, error: `invalid arguments for ${name}: ${issues.join("; ")}` };
}

export interface CallableAgent {
  name: string;
  description: string;
}

const DESCRIPTIONS: Record<string, string> = {
  call_agent:
    "Call another agent with an input (and optional context) and get its result. Several calls in one turn run in parallel; you get every result before your next turn. " +
    "When an external agent answers with status INPUT_REQUIRED and a taskId, call it again with your answer as input and that taskId.",
  complete_agent_execution: "Finish your work with a result. status: SUCCESS, PARTIAL (some of it done) or FAILED; summary: one line.",
  request_user_input:
    "Ask a person for input and wait for the answer: a free text, a choice among `choices`, or an approval (answer 'approved' or 'rejected').",
  run_data_write: "Store a JSON value under a key (with optional tags) in data shared by every agent of this run.",
  run_data_read: "Read the value stored under a key in this run's shared data.",
  run_data_query: "Find entries of this run's shared data by tag and/or key prefix.",
  run_data_list: "List the keys (with tags and sizes) of this run's shared data.",
  run_data_delete: "Delete a key from this run's shared data.",
};

// The JSON Schemas the model sees, made once per isolate. Arguments are checked with zod by
// the executor, so the SDK does not validate (an invalid call becomes a tool error, not an exception).
let schemas: Record<string, ReturnType<typeof jsonSchema>> | null = null;
function schemaOf(name: string): ReturnType<typeof jsonSchema> {
  schemas ??= Object.fromEntries(
    PLATFORM_TOOL_NAMES.map((n) => [n, jsonSchema(z.toJSONSchema(TOOL_ARGS[n]!, { io: "input" }) as Parameters<typeof jsonSchema>[0])]),
  );
  return schemas[name]!;
}

/** The platform tools as the AI SDK offers them to the model (no `execute`: the run object carries them out). */
export function platformTools(callable: CallableAgent[]): ToolSet {
  const tools: ToolSet = {};
  for (const name of PLATFORM_TOOL_NAMES) {
    if (name === "call_agent" && callable.length === 0) continue;
    let description = DESCRIPTIONS[name]!;
    if (name === "call_agent") description += `\n\nAgents you may call:\n${callable.map((a) => `- \`${a.name}\`: ${a.description || "(no description)"}`).join("\n")}`;
    tools[name] = { description, inputSchema: schemaOf(name) };
  }
  return tools;
}
