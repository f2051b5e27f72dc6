package config

import "testing"

// TestBannerTemplate: a banner set once in defaults greets each tenant by
// name ({user}), and a tenant's own banner wins.
func TestBannerTemplate(t *testing.T) {
	c := parseTwo(t, "  banner: \"Welcome {user}, this is {user}-lab\"\n", "    banner: \"Hi {user}\"\n")
	for name, want := range map[string]string{"alice": "Welcome alice, this is alice-lab", "bob": "Hi bob"} {
		if got := c.Users[name].Banner; got != want {
			t.Errorf("%s's banner %q, want %q", name, got, want)
		}
	}
}
