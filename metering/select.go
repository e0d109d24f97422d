package metering

import (
	"errors"
	"fmt"
	"slices"

	"github.com/crispy-enigma/crispy/config"
)

// ErrModelNotAllowed is returned (wrapped, naming the model) for a model outside the tenant's
// allowedModels when its modelAllowList flag is on.
var ErrModelNotAllowed = errors.New("model not allowed")

// SelectModels is the one model-selection rule: the primary is the request's model, else MODEL_ID,
// else the tenant's aiModels.chat; the fallback is the tenant's aiModels.fallbackChat, else
// FALLBACK_MODEL_ID. Under the tenant's allow-list a primary outside it is refused
// (ErrModelNotAllowed, before any model call) and a fallback outside it is dropped. A fallback equal
// to the primary is dropped too.
func (m *Meter) SelectModels(t *config.TenantConfig, requested string) (primary, fallback string, err error) {
	return SelectModels(m.env, t, requested)
}

// SelectModels is Meter.SelectModels for callers without a Meter.
func SelectModels(env config.Env, t *config.TenantConfig, requested string) (primary, fallback string, err error) {
	primary = firstSet(requested, env.ModelID, t.AIModels.Chat)
	fallback = firstSet(t.AIModels.FallbackChat, env.FallbackModelID)
	if err := checkAllowed(t, primary); err != nil {
		return "", "", err
	}
	if !allowed(t, fallback) || fallback == primary {
		fallback = ""
	}
	return primary, fallback, nil
}

// allowed reports whether the tenant may use model (always, without the allow-list flag).
func allowed(t *config.TenantConfig, model string) bool {
	return !t.Flag("modelAllowList") || slices.Contains(t.AllowedModels, model)
}

func checkAllowed(t *config.TenantConfig, model string) error {
	if !allowed(t, model) {
		return fmt.Errorf("%w: model %q is not in this tenant's allowedModels", ErrModelNotAllowed, model)
	}
	return nil
}

func firstSet(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
