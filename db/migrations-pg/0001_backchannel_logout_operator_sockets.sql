CREATE TABLE "account_blocks" (
	"account_id" text PRIMARY KEY NOT NULL,
	"blocked_at" bigint NOT NULL,
	"blocked_by" text NOT NULL,
	"reason" text NOT NULL
);
--> statement-breakpoint
CREATE TABLE "live_sockets" (
	"id" text PRIMARY KEY NOT NULL,
	"session_id" text NOT NULL,
	"node" text NOT NULL,
	"expires_at" bigint NOT NULL
);
--> statement-breakpoint
CREATE TABLE "logout_token_jtis" (
	"issuer" text NOT NULL,
	"jti" text NOT NULL,
	"expires_at" bigint NOT NULL,
	CONSTRAINT "logout_token_jtis_issuer_jti_pk" PRIMARY KEY("issuer","jti")
);
--> statement-breakpoint
CREATE TABLE "operator_actions" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "operator_actions_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"action" text NOT NULL,
	"account_id" text NOT NULL,
	"session_id" text,
	"provider" text,
	"refresh_token" text,
	"operator" text NOT NULL,
	"detail" text,
	"at" bigint NOT NULL,
	"handled_at" bigint
);
--> statement-breakpoint
ALTER TABLE "sessions" ADD COLUMN "provider_sid" text;--> statement-breakpoint
ALTER TABLE "account_blocks" ADD CONSTRAINT "account_blocks_account_id_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."accounts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "live_sockets" ADD CONSTRAINT "live_sockets_session_id_sessions_id_fk" FOREIGN KEY ("session_id") REFERENCES "public"."sessions"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "live_sockets_session" ON "live_sockets" USING btree ("session_id");--> statement-breakpoint
CREATE INDEX "live_sockets_node" ON "live_sockets" USING btree ("node");--> statement-breakpoint
CREATE INDEX "logout_token_jtis_expires" ON "logout_token_jtis" USING btree ("expires_at");--> statement-breakpoint
CREATE INDEX "operator_actions_pending" ON "operator_actions" USING btree ("handled_at");--> statement-breakpoint
CREATE INDEX "sessions_provider_sid" ON "sessions" USING btree ("provider","provider_sid");