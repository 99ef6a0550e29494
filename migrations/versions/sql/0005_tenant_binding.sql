-- The tenant binding that row-level security trusts (docs/isolation.md).
--
-- Functions here that read tables run as the schema owner (SECURITY DEFINER),
-- whose row-level security policy admits rows only while app.system is on: they
-- switch it on for their own statements and off again before they return (an
-- error aborts the transaction, or the caller's savepoint, which undoes it too).
--
-- A transaction is bound to a tenant by two transaction-local settings:
-- app.tenant_id, and app.tenant_proof, a MAC of that tenant, this backend and the
-- start of this transaction, keyed with wafaa_private.binding_key, which only the
-- schema owner can read. Any role may set app.tenant_id; only these functions
-- produce a proof that matches it. So SQL run by the service's role (an injection)
-- cannot bind its transaction to a tenant it holds no live session of, and a proof
-- copied from one transaction is worth nothing in another.

-- The MAC: SHA-256 nested with two independent 512-bit keys (NMAC, the
-- construction HMAC is proved secure through), built from PostgreSQL's own sha256.
-- PL/pgSQL rather than SQL: its plans are cached for the session, and these run
-- in every statement that reads a tenant table.
CREATE OR REPLACE FUNCTION wafaa_private.mac(p_message text) RETURNS bytea
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_mac bytea;
BEGIN
    SELECT sha256(k.outer_key || sha256(k.inner_key || convert_to(p_message, 'UTF8'))) INTO v_mac
    FROM wafaa_private.binding_key k;
    RETURN v_mac;
END
$$;

CREATE OR REPLACE FUNCTION wafaa_private.tenant_proof(p_tenant uuid) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN encode(wafaa_private.mac(
        'tenant/' || p_tenant::text || '/' || pg_backend_pid()::text || '/'
        || (extract(epoch FROM transaction_timestamp()) * 1000000)::bigint::text), 'hex');
END
$$;

-- Binds the current transaction to a tenant. Owner only: the operators' tenant
-- scope (wafaa.tenancy.tenant_scope) and the functions below.
CREATE OR REPLACE FUNCTION wafaa_private.bind_tenant(p_tenant uuid) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_tenant IS NULL THEN
        RAISE EXCEPTION 'bind_tenant: no tenant' USING ERRCODE = '22004';
    END IF;
    PERFORM set_config('app.tenant_id', p_tenant::text, true),
            set_config('app.tenant_proof', wafaa_private.tenant_proof(p_tenant), true);
END
$$;

-- The tenant the row-level security policies compare with: the bound tenant
-- when its proof holds, else NULL (no rows). Policies call it as
-- (SELECT wafaa_current_tenant()), once per statement.
CREATE OR REPLACE FUNCTION wafaa_current_tenant() RETURNS uuid
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_tenant uuid := NULLIF(current_setting('app.tenant_id', true), '')::uuid;
BEGIN
    IF v_tenant IS NULL OR current_setting('app.tenant_proof', true) IS DISTINCT FROM
                           wafaa_private.tenant_proof(v_tenant) THEN
        RETURN NULL;
    END IF;
    RETURN v_tenant;
END
$$;

-- A request's transaction: bound to its token's tenant only while the token's
-- session is live and its admin and tenant are active (what the identity
-- function requires too). Takes the session id, which only the token's holder and that
-- tenant's own rows know, so it is passed as a bind parameter, never as SQL text
-- (pg_stat_activity shows other backends' SQL text to the same role).
CREATE OR REPLACE FUNCTION wafaa_bind_session(p_tenant uuid, p_session uuid, p_admin uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_live boolean;
BEGIN
    IF p_tenant IS NULL OR p_session IS NULL OR p_admin IS NULL THEN
        RETURN false;
    END IF;
    -- The owner reads through its own policy, for this one statement.
    PERFORM set_config('app.system', 'on', true);
    PERFORM FROM public.auth_sessions s
    JOIN public.tenant_admins a ON a.tenant_id = s.tenant_id AND a.id = s.admin_id
    JOIN public.tenants t ON t.id = s.tenant_id
    WHERE s.tenant_id = p_tenant AND s.id = p_session AND s.admin_id = p_admin
      AND s.revoked_at IS NULL AND s.expires_at > now() AND a.is_active AND t.is_active;
    v_live := FOUND;
    PERFORM set_config('app.system', '', true);
    IF v_live THEN
        PERFORM wafaa_private.bind_tenant(p_tenant);
    END IF;
    RETURN v_live;
END
$$;
