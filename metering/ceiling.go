package metering

import (
	"context"

	"github.com/crispy-enigma/crispy/actors"
	"github.com/crispy-enigma/crispy/config"
)

// TenantCeilingIdentity is the RateLimiter identity of a tenant's tenant-wide ceiling. Per-user
// identities are prefixed ("user:", "key:", "ip:"), so no client-chosen ID can name it.
const TenantCeilingIdentity = "tenant"

// AllowTenant asks the tenant-wide ceiling (rateLimit.tenantPerMinute and tenantBurst, defaulted
// by the config parser) whether the tenant may make one more request, whoever the user. The
// per-user limit is keyed on an ID the client may choose: varying it once got 30 of 30 requests
// through a 5/minute tenant, and 20,000 IDs made 20,000 limiters. Ask AllowTenant before Allow:
// then a denied request creates no per-user limiter, and at most tenantPerMinute limiters are
// made per window. A denial is counted and audited as Allow's are.
func (m *Meter) AllowTenant(ctx context.Context, t *config.TenantConfig, who Caller) (actors.RateDecision, error) {
	ceiling := *t
	ceiling.RateLimit.PerMinute, ceiling.RateLimit.Burst = t.RateLimit.TenantPerMinute, t.RateLimit.TenantBurst
	return m.Allow(ctx, &ceiling, TenantCeilingIdentity, who)
}
