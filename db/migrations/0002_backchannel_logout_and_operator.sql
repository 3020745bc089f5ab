CREATE TABLE `account_blocks` (
	`account_id` text PRIMARY KEY NOT NULL,
	`blocked_at` integer NOT NULL,
	`blocked_by` text NOT NULL,
	`reason` text NOT NULL,
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `logout_token_jtis` (
	`issuer` text NOT NULL,
	`jti` text NOT NULL,
	`expires_at` integer NOT NULL,
	PRIMARY KEY(`issuer`, `jti`)
);
--> statement-breakpoint
CREATE INDEX `logout_token_jtis_expires` ON `logout_token_jtis` (`expires_at`);--> statement-breakpoint
CREATE TABLE `operator_actions` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`action` text NOT NULL,
	`account_id` text NOT NULL,
	`session_id` text,
	`provider` text,
	`refresh_token` text,
	`operator` text NOT NULL,
	`detail` text,
	`at` integer NOT NULL,
	`handled_at` integer
);
--> statement-breakpoint
CREATE INDEX `operator_actions_pending` ON `operator_actions` (`handled_at`);--> statement-breakpoint
ALTER TABLE `sessions` ADD `provider_sid` text;--> statement-breakpoint
CREATE INDEX `sessions_provider_sid` ON `sessions` (`provider`,`provider_sid`);