ALTER TABLE `org_secrets` ADD `allowed_hosts` text;--> statement-breakpoint
ALTER TABLE `repositories` ADD `sync_lease_token` text;--> statement-breakpoint
ALTER TABLE `repositories` ADD `failed_commit` text;