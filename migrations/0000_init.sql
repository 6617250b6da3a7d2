CREATE TABLE `agents` (
	`org_id` text NOT NULL,
	`repository_id` text NOT NULL,
	`name` text NOT NULL,
	`path` text NOT NULL,
	`commit_sha` text NOT NULL,
	`blob_sha` text NOT NULL,
	`exposed` integer DEFAULT false NOT NULL,
	`description` text DEFAULT '' NOT NULL,
	`version` text,
	`model` text,
	`tags` text DEFAULT '[]' NOT NULL,
	`card` text,
	`updated_at` integer DEFAULT (unixepoch('subsec') * 1000) NOT NULL,
	PRIMARY KEY(`repository_id`, `name`),
	FOREIGN KEY (`org_id`) REFERENCES `orgs`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`repository_id`) REFERENCES `repositories`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `agents_org_name` ON `agents` (`org_id`,`name`);--> statement-breakpoint
CREATE TABLE `orgs` (
	`id` text PRIMARY KEY NOT NULL,
	`slug` text NOT NULL,
	`name` text NOT NULL,
	`created_at` integer DEFAULT (unixepoch('subsec') * 1000) NOT NULL,
	`updated_at` integer DEFAULT (unixepoch('subsec') * 1000) NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `orgs_slug_unique` ON `orgs` (`slug`);--> statement-breakpoint
CREATE TABLE `repositories` (
	`id` text PRIMARY KEY NOT NULL,
	`org_id` text NOT NULL,
	`name` text NOT NULL,
	`git_url` text NOT NULL,
	`branch` text DEFAULT 'main' NOT NULL,
	`is_root` integer DEFAULT false NOT NULL,
	`credential_secret` text,
	`sync_interval_seconds` integer DEFAULT 300 NOT NULL,
	`sync_status` text DEFAULT 'pending' NOT NULL,
	`last_commit` text,
	`last_synced_at` integer,
	`last_error` text,
	`created_at` integer DEFAULT (unixepoch('subsec') * 1000) NOT NULL,
	`updated_at` integer DEFAULT (unixepoch('subsec') * 1000) NOT NULL,
	FOREIGN KEY (`org_id`) REFERENCES `orgs`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE UNIQUE INDEX `repositories_org_name_unique` ON `repositories` (`org_id`,`name`);--> statement-breakpoint
CREATE TABLE `runs` (
	`id` text PRIMARY KEY NOT NULL,
	`org_id` text NOT NULL,
	`context_id` text NOT NULL,
	`agent_name` text NOT NULL,
	`repository_id` text NOT NULL,
	`commit_sha` text NOT NULL,
	`status` text DEFAULT 'submitted' NOT NULL,
	`initiated_by` text,
	`error` text,
	`created_at` integer DEFAULT (unixepoch('subsec') * 1000) NOT NULL,
	`updated_at` integer DEFAULT (unixepoch('subsec') * 1000) NOT NULL,
	`completed_at` integer,
	FOREIGN KEY (`org_id`) REFERENCES `orgs`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `runs_org_created` ON `runs` (`org_id`,`created_at`);--> statement-breakpoint
CREATE INDEX `runs_org_context` ON `runs` (`org_id`,`context_id`);