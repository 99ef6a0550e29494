-- Login, the one cross-tenant entry of the API, and the whole of its policy:
-- throttling, the password comparison, the active flags, and what is recorded.
--
-- The password hash never leaves the database. wafaa_login_salt gives the
-- service the bcrypt salt (and cost) of the account; the service hashes the
-- presented password with it (the one bcrypt check of a login, done by the
-- service's CPUs, with no connection held) and wafaa_login compares the result
-- with the stored hash.

-- The bcrypt salt of the account with this (normalised) email. For an unknown
-- email, a salt derived from the email with the private key: the same on every
-- call and shaped like a real one, so the answer does not tell whether the
-- account exists.
CREATE OR REPLACE FUNCTION wafaa_login_salt(p_email text, p_rounds integer) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_salt text;
    v_cost text;
BEGIN
    IF p_email IS NULL OR length(p_email) > 255 OR p_rounds IS NULL OR p_rounds NOT BETWEEN 4 AND 31 THEN
        RAISE EXCEPTION 'wafaa_login_salt: invalid arguments' USING ERRCODE = '22023';
    END IF;
    PERFORM set_config('app.system', 'on', true);  -- the owner's policy, for this query
    SELECT left(a.password_hash, 29) INTO v_salt FROM public.tenant_admins a WHERE a.email = p_email;
    IF v_salt IS NOT NULL THEN
        PERFORM set_config('app.system', '', true);
        RETURN v_salt;
    END IF;
    -- The cost of a stored hash, not the caller's: asking with two costs must
    -- not tell an unknown email from a known one. p_rounds only when there is
    -- no account at all.
    SELECT substr(a.password_hash, 5, 2) INTO v_cost FROM public.tenant_admins a LIMIT 1;
    PERFORM set_config('app.system', '', true);
    -- bcrypt's base64 is the standard one with another alphabet.
    RETURN '$2b$' || coalesce(v_cost, lpad(p_rounds::text, 2, '0')) || '$' || translate(
        left(encode(substr(wafaa_private.mac('salt/' || p_email), 1, 16), 'base64'), 22),
        'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/',
        './ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789');
END
$$;

-- A login failure in the audit log: one row per account, source address and
-- reason within the window, counting its repeats (details.count, last_at), so
-- that a stream of guesses costs the log one row, not one per guess.
CREATE OR REPLACE FUNCTION wafaa_private.record_login_failure(
    p_tenant uuid, p_admin uuid, p_source text, p_reason text, p_window interval,
    p_ip text, p_details jsonb
) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_row uuid;
BEGIN
    SELECT l.id INTO v_row FROM public.audit_logs l
    WHERE l.tenant_id = p_tenant AND l.action = 'auth.login_failed' AND l.resource_id = p_admin::text
      AND l.created_at > now() - p_window
      AND l.details ->> 'source' = p_source AND l.details ->> 'reason' = p_reason
    ORDER BY l.created_at DESC LIMIT 1
    FOR UPDATE;
    IF FOUND THEN
        UPDATE public.audit_logs l
        SET details = l.details || jsonb_build_object(
                'count', coalesce((l.details ->> 'count')::integer, 1) + 1, 'last_at', clock_timestamp())
        WHERE l.tenant_id = p_tenant AND l.id = v_row;
    ELSE
        INSERT INTO public.audit_logs (tenant_id, user_id, action, resource_type, resource_id, details, ip_address)
        VALUES (p_tenant, p_admin, 'auth.login_failed', 'admin', p_admin::text,
                p_details || jsonb_build_object('reason', p_reason, 'source', p_source, 'count', 1,
                                                'last_at', clock_timestamp()),
                p_ip);
    END IF;
END
$$;

-- A login attempt. p_candidate_hash is the presented password hashed with the
-- account's salt (NULL for a password bcrypt cannot take). Outcomes: 'started'
-- (the session and its auth.login row are written; the ids come back) or
-- 'refused', and nothing else, whatever the reason: an unknown email (nothing
-- is written) looks like a known one (an auth.login_failed row).
--
-- Throttling is per account and source (p_source: the client's address, an
-- IPv6 one as its network): after p_threshold wrong passwords from one source
-- within p_window, that source's next attempt is not even checked until
-- p_base has passed since its last failure, twice as long after each further
-- failure, at most p_window. A source without recent failures (the account's
-- owner, elsewhere) is not slowed, so guessing from one place cannot lock
-- anybody out. A success from a source clears its count; a password change or
-- `flask admins unlock` clears them all (login_throttles rows are deleted).
--
-- The account's row is locked first, so concurrent attempts on one account take
-- turns and each sees those before it. p_new_hash, when given, replaces the
-- stored hash on success (a hash cheaper than today's cost, upgraded while the
-- password is at hand).
CREATE OR REPLACE FUNCTION wafaa_login(
    p_email text, p_candidate_hash text, p_new_hash text,
    p_threshold integer, p_window interval, p_base interval,
    p_session uuid, p_refresh_jti text, p_lifetime interval,
    p_ip text, p_source text, p_user_agent text, p_details jsonb
)
RETURNS TABLE (outcome text, tenant_id uuid, admin_id uuid, expires_at timestamptz)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_admin uuid;
    v_tenant uuid;
    v_hash text;
    v_active boolean;
    v_throttle public.login_throttles;
    v_failures integer := 0;
    v_reason text;
    v_details jsonb := coalesce(p_details, '{}'::jsonb);
BEGIN
    -- The policy comes from the service's configuration, but only within these
    -- bounds (config.py enforces the same): SQL run as the service's role cannot
    -- switch throttling off or make a session outlive what any configuration
    -- allows. The details are the request id only, the addresses addresses.
    IF p_email IS NULL OR p_threshold IS NULL OR p_threshold NOT BETWEEN 1 AND 100
       OR p_window IS NULL OR p_window NOT BETWEEN interval '1 minute' AND interval '1 day'
       OR p_base IS NULL OR p_base NOT BETWEEN interval '1 second' AND interval '1 minute'
       OR p_session IS NULL OR p_refresh_jti IS NULL OR length(p_refresh_jti) NOT BETWEEN 1 AND 64
       OR p_lifetime IS NULL OR p_lifetime NOT BETWEEN interval '1 minute' AND interval '90 days'
       OR jsonb_typeof(v_details) <> 'object'
       OR EXISTS (SELECT FROM jsonb_each(v_details) d
                  WHERE d.key NOT IN ('request_id', 'via') OR jsonb_typeof(d.value) <> 'string'
                     OR length(d.value #>> '{}') > 64)
       OR (p_ip IS NOT NULL AND (length(p_ip) > 45 OR p_ip !~ '^[0-9A-Fa-f.:]+$'))
       OR p_source IS NULL OR length(p_source) > 49 OR p_source !~ '^([0-9A-Fa-f.:]+(/[0-9]{1,3})?|unknown)$'
       OR (p_new_hash IS NOT NULL AND p_new_hash !~ '^\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}$') THEN
        RAISE EXCEPTION 'wafaa_login: invalid arguments' USING ERRCODE = '22023';
    END IF;

    PERFORM set_config('app.system', 'on', true);  -- the owner's policy, until the end
    SELECT a.id, a.tenant_id, a.password_hash, a.is_active AND t.is_active
    INTO v_admin, v_tenant, v_hash, v_active
    FROM public.tenant_admins a JOIN public.tenants t ON t.id = a.tenant_id
    WHERE a.email = p_email
    -- NO KEY UPDATE: the key never changes here, and a plain FOR UPDATE would
    -- also block the foreign-key checks (KEY SHARE) of a concurrent request's
    -- audit row naming this admin, which deadlocked against a tenant change.
    FOR NO KEY UPDATE OF a;
    IF NOT FOUND THEN
        PERFORM set_config('app.system', '', true);
        RETURN QUERY SELECT 'refused'::text, NULL::uuid, NULL::uuid, NULL::timestamptz;
        RETURN;
    END IF;

    SELECT * INTO v_throttle FROM public.login_throttles th
    WHERE th.tenant_id = v_tenant AND th.admin_id = v_admin AND th.source = p_source;
    -- Failures older than the window are forgotten.
    IF FOUND AND v_throttle.last_failed_at > now() - p_window THEN
        v_failures := v_throttle.failures;
    END IF;

    IF v_failures >= p_threshold AND now() < v_throttle.last_failed_at
            + least(p_base * power(2, least(v_failures - p_threshold, 20)), p_window) THEN
        -- Even the right password: a throttled attempt gets the same answer as a
        -- wrong one, and is not checked.
        v_reason := 'throttled';
    ELSIF p_candidate_hash IS NULL OR p_candidate_hash IS DISTINCT FROM v_hash THEN
        v_reason := 'bad_password';
    ELSIF NOT v_active THEN
        v_reason := 'inactive';
    END IF;

    IF v_reason IS NOT NULL THEN
        IF v_reason = 'bad_password' THEN
            INSERT INTO public.login_throttles AS th (tenant_id, admin_id, source, failures, last_failed_at)
            VALUES (v_tenant, v_admin, p_source, v_failures + 1, now())
            ON CONFLICT ON CONSTRAINT pk_login_throttles
            DO UPDATE SET failures = v_failures + 1, last_failed_at = now();
            IF v_failures + 1 = p_threshold THEN
                INSERT INTO public.audit_logs
                    (tenant_id, user_id, action, resource_type, resource_id, details, ip_address)
                VALUES (v_tenant, v_admin, 'auth.login_throttled', 'admin', v_admin::text,
                        v_details || jsonb_build_object(
                            'source', p_source, 'failures', p_threshold,
                            'window_minutes', (extract(epoch FROM p_window) / 60)::integer),
                        p_ip);
            END IF;
        END IF;
        PERFORM wafaa_private.record_login_failure(v_tenant, v_admin, p_source, v_reason, p_window, p_ip, v_details);
        PERFORM set_config('app.system', '', true);
        RETURN QUERY SELECT 'refused'::text, NULL::uuid, NULL::uuid, NULL::timestamptz;
        RETURN;
    END IF;

    DELETE FROM public.login_throttles th
    WHERE th.tenant_id = v_tenant AND th.admin_id = v_admin AND th.source = p_source;
    UPDATE public.tenant_admins a
    SET last_login = now(), password_hash = coalesce(p_new_hash, a.password_hash)
    WHERE a.tenant_id = v_tenant AND a.id = v_admin;
    INSERT INTO public.auth_sessions
        (id, tenant_id, admin_id, refresh_jti, last_used_at, expires_at, ip_address, user_agent)
    VALUES (p_session, v_tenant, v_admin, p_refresh_jti, now(), now() + p_lifetime, p_ip, left(p_user_agent, 255));
    IF p_new_hash IS NOT NULL THEN
        v_details := v_details || '{"password_rehashed": true}'::jsonb;
    END IF;
    INSERT INTO public.audit_logs (tenant_id, user_id, action, resource_type, resource_id, details, ip_address)
    VALUES (v_tenant, v_admin, 'auth.login', 'session', p_session::text, v_details, p_ip);
    PERFORM set_config('app.system', '', true);
    RETURN QUERY SELECT 'started'::text, v_tenant, v_admin, now() + p_lifetime;
END
$$;
