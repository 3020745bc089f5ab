-- Hand-edited from drizzle-kit's output: SQLite cannot ADD a NOT NULL column without a
-- default, and rows are now keyed by the state's hash, not the cookie's. A login in
-- progress during the upgrade is lost (the player clicks "Log in" again; 600 s at most).
DROP TABLE `login_attempts`;--> statement-breakpoint
CREATE TABLE `login_attempts` (
	`id` text PRIMARY KEY NOT NULL,
	`browser` text NOT NULL,
	`provider` text NOT NULL,
	`code_verifier` text NOT NULL,
	`nonce` text NOT NULL,
	`return_to` text NOT NULL,
	`previous_session_id` text,
	`previous_account_id` text,
	`expires_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `login_attempts_browser` ON `login_attempts` (`browser`);
