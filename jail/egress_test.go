package jail

import "testing"

func TestParseEgressRule(t *testing.T) {
	good := map[string]string{
		"10.1.2.3:5432":            "10.1.2.3/32:5432",
		"192.168.0.0/16":           "192.168.0.0/16",
		"203.0.113.0/24:8000-8999": "203.0.113.0/24:8000-8999",
		"0.0.0.0/0:443":            "0.0.0.0/0:443",
	}
	for in, want := range good {
		r, err := ParseEgressRule(in)
		if err != nil || r.String() != want {
			t.Errorf("ParseEgressRule(%q) = %v, %v; want %s", in, r, err, want)
		}
	}
	for _, bad := range []string{"", "10.1.2.3/33", "10.1.2.3/8", "host:80", "10.0.0.1:0", "10.0.0.1:70000",
		"10.0.0.1:90-80", "10.0.0.1:x", "10.0.0.1:", "fd00::1", "[::1]:80", "10.0.0.1:80-"} {
		if r, err := ParseEgressRule(bad); err == nil {
			t.Errorf("ParseEgressRule(%q) = %v, want an error", bad, r)
		}
	}
}

func TestEgressMinimal(t *testing.T) {
	parse := func(s string) EgressRule { r, _ := ParseEgressRule(s); return r }
	got := minimal([]EgressRule{parse("10.0.0.0/8:80"), parse("10.1.0.0/16:80"), parse("10.0.0.0/8:80"), parse("10.1.2.3")})
	if len(got) != 2 || got[0].String() != "10.0.0.0/8:80" || got[1].String() != "10.1.2.3/32" {
		t.Errorf("minimal = %v, want 10.0.0.0/8:80 and 10.1.2.3/32", got)
	}
}
