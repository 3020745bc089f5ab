-- A connection setup's writes (issue 13: setups on PostgreSQL at 0.7x SQLite). Each function
-- is one round trip, and each commits asynchronously (synchronous_commit off for its own
-- transaction only, set_config's third argument): the commit returns before its WAL reaches
-- the disk, which the WAL writer does within 3 x wal_writer_delay (600 ms by default). A
-- crash of the database server may lose those last commits, never corrupt anything, which is
-- what SQLite's synchronous=NORMAL promises the embedded engine. Only rows whose loss is
-- harmless are written this way, and README says so:
--   * a ticket issued and lost cannot be spent: the browser asks for another;
--   * a ticket spent and its spending lost could be spent again within its 30 s, but only by
--     an upgrade that also carries the session's cookie (the gate checks the owner), which
--     could ask for a fresh ticket anyway;
--   * a socket slot claimed or released and lost counts wrongly until its node's renewal
--     (the live sockets of a crashed database's nodes are rechecked when it comes back).
-- Sessions, their ends, accounts, blocks and everything else commit synchronously as before.

-- POST /auth/ws-ticket: a ticket row (only its SHA-256 is stored).
CREATE OR REPLACE FUNCTION portcullis_issue_ticket(
  p_hash text,
  p_session text,
  p_expires_at bigint
) RETURNS void LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  PERFORM set_config('synchronous_commit', 'off', true);
  INSERT INTO ws_tickets (hash, session_id, expires_at) VALUES (p_hash, p_session, p_expires_at);
END;
$$;
--> statement-breakpoint

-- The upgrade's ticket and socket slot in one round trip, in the gate's order (SECURITY.md
-- E22): the ticket is spent first, whatever follows; then it must be this session's; then
-- the slot is claimed under the session row's lock, as portcullis_claim_socket does (0002).
-- Returns 'unknown', 'expired', 'wrong_session', 'full' or the slot id.
CREATE OR REPLACE FUNCTION portcullis_admit_socket(
  p_ticket_hash text,
  p_session text,
  p_slot text,
  p_node text,
  p_now bigint,
  p_expires_at bigint,
  p_cap integer
) RETURNS text LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  ticket_session text;
  ticket_expires bigint;
BEGIN
  PERFORM set_config('synchronous_commit', 'off', true);
  DELETE FROM ws_tickets WHERE hash = p_ticket_hash RETURNING session_id, expires_at INTO ticket_session, ticket_expires;
  IF NOT FOUND THEN
    RETURN 'unknown';
  END IF;
  IF ticket_expires <= p_now THEN
    RETURN 'expired';
  END IF;
  IF ticket_session <> p_session THEN
    RETURN 'wrong_session';
  END IF;
  IF portcullis_claim_socket(p_session, p_slot, p_node, p_now, p_expires_at, p_cap) IS NULL THEN
    RETURN 'full';
  END IF;
  RETURN p_slot;
END;
$$;
--> statement-breakpoint

-- A socket closed: its slot stops counting.
CREATE OR REPLACE FUNCTION portcullis_release_socket(p_slot text) RETURNS void LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  PERFORM set_config('synchronous_commit', 'off', true);
  DELETE FROM live_sockets WHERE id = p_slot;
END;
$$;
