package keys

import (
	"strings"
	"testing"
)

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

// TestPermits: permitopen entries accumulate, "*" stands for any port (or
// host), "none" forbids everything, and hosts compare literally, as sshd
// does (no name lookup: localhost is not 127.0.0.1). permitlisten takes
// "[host:]port" (a bare port listens on any address), matches the bind
// address as the client sent it against the host as a pattern, and lets
// port 0 (allocate one) through only with port "*".
func TestPermits(t *testing.T) {
	type addr struct {
		host string
		port uint32
		ok   bool
	}
	for _, tc := range []struct {
		opts   []string
		listen bool // check ListenAllowed, not OpenAllowed
		addrs  []addr
	}{
		{nil, false, []addr{{"localhost", 8888, true}, {"10.0.0.1", 22, true}}},
		{[]string{`permitopen="localhost:8888"`}, false, []addr{
			{"localhost", 8888, true}, {"LocalHost", 8888, true}, {"localhost", 8889, false},
			{"127.0.0.1", 8888, false}, {"", 8888, false}}},
		{[]string{`permitopen="localhost:8888"`, `permitopen="127.0.0.1:6006"`}, false, []addr{
			{"localhost", 8888, true}, {"127.0.0.1", 6006, true}, {"127.0.0.1", 8888, false}}},
		{[]string{`permitopen="localhost:8888,[::1]:9000"`}, false, []addr{
			{"localhost", 8888, true}, {"::1", 9000, true}, {"::1", 8888, false}}},
		{[]string{`permitopen="localhost:*"`}, false, []addr{
			{"localhost", 1, true}, {"localhost", 65535, true}, {"127.0.0.1", 1, false}}},
		{[]string{`permitopen="*:5432"`}, false, []addr{
			{"localhost", 5432, true}, {"127.0.0.1", 5432, true}, {"localhost", 5433, false}}},
		{[]string{`permitopen="none"`}, false, []addr{{"localhost", 8888, false}, {"127.0.0.1", 1, false}}},
		{[]string{"restrict", "port-forwarding", `permitopen="localhost:8888"`}, false, []addr{
			{"localhost", 8888, true}, {"localhost", 22, false}}},
		{[]string{`permitopen="localhost:8888"`}, true, []addr{{"localhost", 8080, true}}}, // -L only
		{nil, true, []addr{{"localhost", 8080, true}, {"", 0, true}}},
		{[]string{`permitlisten="8080"`}, true, []addr{
			{"localhost", 8080, true}, {"", 8080, true}, {"127.0.0.1", 8080, true}, {"localhost", 8081, false},
			{"localhost", 0, false}}},
		{[]string{`permitlisten="localhost:8080"`}, true, []addr{
			{"localhost", 8080, true}, {"127.0.0.1", 8080, false}, {"", 8080, false}}},
		{[]string{`permitlisten="127.0.0.*:*"`}, true, []addr{
			{"127.0.0.1", 0, true}, {"127.0.0.1", 3000, true}, {"localhost", 3000, false}}},
		{[]string{`permitlisten="localhost:8080"`, `permitlisten="3000"`}, true, []addr{
			{"localhost", 8080, true}, {"127.0.0.1", 3000, true}, {"127.0.0.1", 8080, false}}},
		{[]string{`permitlisten="none"`}, true, []addr{{"localhost", 8080, false}, {"", 0, false}}},
		{[]string{`permitlisten="none"`}, false, []addr{{"localhost", 8080, true}}}, // -R only
	} {
		o, err := ParseOptions(tc.opts)
		if err != nil {
			t.Fatalf("%v: %v", tc.opts, err)
		}
		check, name := o.OpenAllowed, "OpenAllowed"
		if tc.listen {
			check, name = o.ListenAllowed, "ListenAllowed"
		}
		for _, a := range tc.addrs {
			if got := check(a.host, a.port); got != a.ok {
				t.Errorf("%v: %s(%q, %d) = %v, want %v", tc.opts, name, a.host, a.port, got, a.ok)
			}
		}
	}
}

// TestOptionErrors: malformed permitopen/permitlisten values and the
// options jailgate cannot honour are errors that name the option; the
// options that change nothing here are accepted.
func TestOptionErrors(t *testing.T) {
	for _, tc := range []struct {
		opt, want string
	}{
		{`permitopen="localhost"`, `permitopen="localhost": "localhost" is not host:port`},
		{`permitopen="8888"`, `"8888" is not host:port`},
		{`permitopen=""`, `"" is not host:port`},
		{`permitopen="localhost:0"`, `port "0" is not 1-65535 or *`},
		{`permitopen="localhost:http"`, `port "http" is not 1-65535 or *`},
		{`permitopen="::1:80"`, `is not host:port`},
		{`permitlisten="70000"`, `permitlisten="70000": "*:70000": port "70000" is not 1-65535 or *`},
		{`permitlisten=":80"`, `is not [host:]port`},
		{`cert-authority`, `key option "cert-authority" is not supported in key lines: list the CA under trusted_user_ca_keys`},
		{`principals="alice"`, `key option "principals" needs cert-authority`},
		{`verify-required`, `key option "verify-required" is not supported`},
		{`no-touch-required`, `key option "no-touch-required" is not supported`},
	} {
		_, err := ParseOptions([]string{tc.opt})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to contain %q", tc.opt, err, tc.want)
		}
	}
	for _, opts := range [][]string{
		{`permitopen="none"`, `permitopen="localhost:80"`},
		{`permitopen="localhost:80"`, `permitopen="none"`},
		{`permitlisten="none"`, `permitlisten="none"`},
	} {
		if _, err := ParseOptions(opts); err == nil || !strings.Contains(err.Error(), "none cannot be combined") {
			t.Errorf("%v: err = %v, want none cannot be combined", opts, err)
		}
	}
	ok := []string{"no-x11-forwarding", "x11-forwarding", "no-user-rc", "user-rc", `environment="A=b"`, `tunnel="0"`,
		`permitopen="localhost:8888"`, `permitlisten="none"`}
	if _, err := ParseOptions(ok); err != nil {
		t.Errorf("%v: %v", ok, err)
	}
}
