-- The one query of every authenticated request: the token's session, its admin
-- and its tenant, if the session is live and both are active. The tenant comes
-- back as its whole row, as JSON (a new column reaches GET /tenants/me without
-- editing this function, and a running service keeps working while a migration
-- adds one); the admin as what the request identity needs, never the password
-- hash. One round trip, with a cached plan (docs/performance.md).
CREATE OR REPLACE FUNCTION wafaa_request_identity(p_tenant uuid, p_session uuid, p_admin uuid)
RETURNS TABLE (
    refresh_jti varchar, expires_at timestamptz,
    email varchar, full_name varchar, role text,
    tenant jsonb
)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM set_config('app.system', 'on', true);  -- the owner's policy, for this query
    RETURN QUERY
    SELECT s.refresh_jti, s.expires_at, a.email, a.full_name, a.role::text, to_jsonb(t)
    FROM public.auth_sessions s
    JOIN public.tenant_admins a ON a.tenant_id = s.tenant_id AND a.id = s.admin_id
    JOIN public.tenants t ON t.id = s.tenant_id
    WHERE s.tenant_id = p_tenant AND s.id = p_session AND s.admin_id = p_admin
      AND s.revoked_at IS NULL AND s.expires_at > now()
      AND a.is_active AND t.is_active;
    PERFORM set_config('app.system', '', true);
END
$$;
