-- WS_MAX_SOCKETS_PER_SESSION across nodes in one round trip (issue 13: setups on PostgreSQL
-- were 0.10x SQLite, the claim being a six-statement transaction). The claim runs inside the
-- server: it locks the session's row, so claims of one session on any node queue there, and
-- as a VOLATILE function each statement below takes a new snapshot (PostgreSQL docs 38.7):
-- the count sees every slot the previous lock holder committed. The lock and the insert
-- commit with the calling statement. FOR NO KEY UPDATE rather than FOR UPDATE: ticket
-- inserts (their foreign key takes KEY SHARE on the row) need not wait behind a claim.
CREATE OR REPLACE FUNCTION portcullis_claim_socket(
  p_session text,
  p_slot text,
  p_node text,
  p_now bigint,
  p_expires_at bigint,
  p_cap integer
) RETURNS text LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  held integer;
BEGIN
  PERFORM 1 FROM sessions WHERE id = p_session FOR NO KEY UPDATE;
  -- The session ended meanwhile: no slot (the gate refuses).
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  -- Slots of a node that died lapse: its renewals stopped.
  DELETE FROM live_sockets WHERE session_id = p_session AND expires_at <= p_now;
  SELECT count(*) INTO held FROM live_sockets WHERE session_id = p_session;
  IF held >= p_cap THEN
    RETURN NULL;
  END IF;
  INSERT INTO live_sockets (id, session_id, node, expires_at) VALUES (p_slot, p_session, p_node, p_expires_at);
  RETURN p_slot;
END;
$$;
