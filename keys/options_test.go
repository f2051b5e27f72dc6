package keys

import "testing"

// TestAgentForwardingOptions: no-agent-forwarding and restrict refuse ssh
// -A; agent-forwarding gives it back after restrict, as in sshd.
func TestAgentForwardingOptions(t *testing.T) {
	for _, tc := range []struct {
		opts []string
		no   bool
	}{
		{nil, false},
		{[]string{"no-agent-forwarding"}, true},
		{[]string{"restrict"}, true},
		{[]string{"restrict", "agent-forwarding"}, false},
		{[]string{"agent-forwarding", "restrict"}, false},
		{[]string{"restrict", "port-forwarding"}, true},
	} {
		o, err := ParseOptions(tc.opts)
		if err != nil {
			t.Fatalf("%v: %v", tc.opts, err)
		}
		if o.NoAgentForwarding != tc.no {
			t.Errorf("%v: NoAgentForwarding %v, want %v", tc.opts, o.NoAgentForwarding, tc.no)
		}
	}
}
