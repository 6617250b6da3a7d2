-- One row per model call: tokens, cost and what it reserved against the org's budget.
-- The id is the call's (run:step:turn:attempt), so a write that is repeated adds nothing.
CREATE TABLE `usage_records` (
	`id` text PRIMARY KEY NOT NULL,
	`org_id` text NOT NULL,
	`run_id` text NOT NULL,
	`step_id` text NOT NULL,
	`turn` integer NOT NULL,
	`attempt` integer NOT NULL,
	`agent` text NOT NULL,
	`repository_id` text NOT NULL,
	`model` text NOT NULL,
	`input_tokens` integer DEFAULT 0 NOT NULL,
	`cached_input_tokens` integer DEFAULT 0 NOT NULL,
	`output_tokens` integer DEFAULT 0 NOT NULL,
	`reasoning_tokens` integer DEFAULT 0 NOT NULL,
	`cost_usd` real DEFAULT 0 NOT NULL,
	`priced` integer DEFAULT 1 NOT NULL,
	`reserved_tokens` integer DEFAULT 0 NOT NULL,
	`reserved_usd` real DEFAULT 0 NOT NULL,
	`at` integer NOT NULL,
	FOREIGN KEY (`org_id`) REFERENCES `orgs`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `usage_org_at` ON `usage_records` (`org_id`,`at`);--> statement-breakpoint
CREATE INDEX `usage_org_agent_at` ON `usage_records` (`org_id`,`repository_id`,`agent`,`at`);--> statement-breakpoint
CREATE INDEX `usage_org_run` ON `usage_records` (`org_id`,`run_id`);
