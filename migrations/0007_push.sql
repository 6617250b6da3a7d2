-- Push notification configs of A2A tasks (src/push/). One row per (org, task, config id).
-- The token and literal credentials are stored encrypted with the org's key (like org
-- secrets); `auth_secret` names an org secret instead (sent only to its allowed hosts).
CREATE TABLE `push_configs` (
	`org_id` text NOT NULL,
	`run_id` text NOT NULL,
	`id` text NOT NULL,
	`url` text NOT NULL,
	`token_ciphertext` text,
	`auth_scheme` text,
	`auth_ciphertext` text,
	`auth_secret` text,
	`dialect` text DEFAULT '1.0' NOT NULL,
	`from_seq` integer DEFAULT 0 NOT NULL,
	`created_by` text,
	`created_at` integer DEFAULT (unixepoch('subsec') * 1000) NOT NULL,
	`updated_at` integer DEFAULT (unixepoch('subsec') * 1000) NOT NULL,
	PRIMARY KEY(`org_id`, `run_id`, `id`),
	FOREIGN KEY (`org_id`) REFERENCES `orgs`(`id`) ON UPDATE no action ON DELETE cascade
);
