CREATE TABLE `agent_aliases` (
	`org_id` text NOT NULL,
	`repository_id` text NOT NULL,
	`alias` text NOT NULL,
	`kind` text NOT NULL,
	`url` text,
	`credential_secret` text,
	`target` text,
	`description` text DEFAULT '' NOT NULL,
	PRIMARY KEY(`repository_id`, `alias`),
	FOREIGN KEY (`org_id`) REFERENCES `orgs`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`repository_id`) REFERENCES `repositories`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `agent_aliases_org` ON `agent_aliases` (`org_id`,`alias`);--> statement-breakpoint
CREATE TABLE `external_agents` (
	`org_id` text NOT NULL,
	`name` text NOT NULL,
	`url` text NOT NULL,
	`credential_secret` text,
	`description` text DEFAULT '' NOT NULL,
	`created_at` integer DEFAULT (unixepoch('subsec') * 1000) NOT NULL,
	`updated_at` integer DEFAULT (unixepoch('subsec') * 1000) NOT NULL,
	PRIMARY KEY(`org_id`, `name`),
	FOREIGN KEY (`org_id`) REFERENCES `orgs`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
ALTER TABLE `repositories` ADD `sync_problems` text DEFAULT '[]' NOT NULL;--> statement-breakpoint
ALTER TABLE `repositories` ADD `webhook_secret` text;--> statement-breakpoint
ALTER TABLE `repositories` ADD `next_sync_at` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `repositories` ADD `sync_lease_until` integer;--> statement-breakpoint
ALTER TABLE `repositories` ADD `last_checked_at` integer;--> statement-breakpoint
CREATE UNIQUE INDEX `repositories_org_url_branch_unique` ON `repositories` (`org_id`,`git_url`,`branch`);--> statement-breakpoint
CREATE INDEX `repositories_next_sync` ON `repositories` (`next_sync_at`);