package keys

import (
	"errors"
	"fmt"
	"net"
	"path"
	"strconv"
	"strings"
	"time"
)

// Options are the authorized_keys options jailgate honours (sshd(8)
// AUTHORIZED_KEYS FILE FORMAT).
type Options struct {
	Command           string    // command="…": forced command; the client's goes to SSH_ORIGINAL_COMMAND
	From              []string  // from="…": patterns the client address must match
	NoPTY             bool      // no-pty (or restrict without pty)
	NoPortForwarding  bool      // no-port-forwarding (or restrict without port-forwarding): -L and -R
	NoAgentForwarding bool      // no-agent-forwarding (or restrict without agent-forwarding)
	Expiry            time.Time // expiry-time="YYYYMMDD[HHMM[SS]]" (local time); zero: none
	// PermitOpen (permitopen="host:port") lists the only destinations ssh
	// -L may name; nil allows any, an empty list (permitopen="none") none.
	PermitOpen []Permit
	// PermitListen (permitlisten="[host:]port") lists the only addresses
	// ssh -R may listen on; nil allows any, an empty list none.
	PermitListen []Permit
}

// Permit is one permitopen or permitlisten entry.
type Permit struct {
	Host string // a host name or address; "*" matches any (for permitlisten, a pattern)
	Port int    // 1-65535; AnyPort ("*") matches any port
}

// AnyPort is the Port of a Permit written with port "*".
const AnyPort = 0

// ignoredOptions are accepted and change nothing, each for a reason that
// holds whatever the rest of the configuration says.
var ignoredOptions = map[string]bool{
	// X11 forwarding is always refused, whatever the key says.
	"no-x11-forwarding": true, "x11-forwarding": true,
	// jailgate never runs ~/.ssh/rc.
	"no-user-rc": true, "user-rc": true,
	// sshd ignores environment= unless PermitUserEnvironment is set, and
	// jailgate has no such switch: a tenant's environment is fixed.
	"environment": true,
	// tun@openssh.com channels are always refused (sshd PermitTunnel no).
	"tunnel": true,
}

// refusedOptions are options jailgate cannot honour as sshd would; a key
// line carrying one is a configuration error, so that no key silently
// grants more, or less, than its line says.
var refusedOptions = map[string]string{
	"cert-authority":    "is not supported in key lines: list the CA under trusted_user_ca_keys",
	"principals":        "needs cert-authority, which is not supported in key lines: list the CA under trusted_user_ca_keys",
	"verify-required":   "is not supported: jailgate cannot check that a security key verified its user (PIN)",
	"no-touch-required": "is not supported: jailgate always requires a security key's touch",
}

// ParseOptions interprets the options of one key line. Options jailgate
// has no use for (no-X11-forwarding, no-user-rc, environment=, tunnel=)
// are accepted and ignored; options it cannot honour (cert-authority,
// principals=, verify-required, no-touch-required) and unknown ones are
// errors.
func ParseOptions(opts []string) (Options, error) {
	var o Options
	pty, fwd, agent := false, false, false
	openNone, listenNone := false, false
	for _, opt := range opts {
		name, value, hasValue := strings.Cut(opt, "=")
		name = strings.ToLower(name)
		if hasValue {
			value = strings.Trim(value, `"`)
		}
		switch name {
		case "command":
			o.Command = value
		case "from":
			o.From = strings.Split(value, ",")
		case "no-pty":
			o.NoPTY = true
		case "no-port-forwarding":
			o.NoPortForwarding = true
		case "restrict":
			o.NoPTY, o.NoPortForwarding, o.NoAgentForwarding = true, true, true
		case "no-agent-forwarding":
			o.NoAgentForwarding = true
		case "pty":
			pty = true
		case "port-forwarding":
			fwd = true
		case "agent-forwarding":
			agent = true
		case "expiry-time":
			t, err := parseExpiry(value)
			if err != nil {
				return o, fmt.Errorf("expiry-time=%q: want YYYYMMDD[HHMM[SS]]", value)
			}
			o.Expiry = t
		case "permitopen", "permitlisten":
			list, none := &o.PermitOpen, &openNone
			if name == "permitlisten" {
				list, none = &o.PermitListen, &listenNone
			}
			ps, err := parsePermits(value, name == "permitlisten")
			if err != nil {
				return o, fmt.Errorf("%s=%q: %w", name, value, err)
			}
			if *none || (ps == nil && *list != nil) {
				return o, fmt.Errorf("%s=%q: none cannot be combined with other %s options", name, value, name)
			}
			if ps == nil {
				*none, *list = true, []Permit{}
			}
			*list = append(*list, ps...)
		default:
			if msg, ok := refusedOptions[name]; ok {
				return o, fmt.Errorf("key option %q %s", name, msg)
			}
			if !ignoredOptions[name] {
				return o, fmt.Errorf("unknown key option %q", name)
			}
		}
	}
	// restrict first, then the explicit re-enables, in any order.
	if pty {
		o.NoPTY = false
	}
	if fwd {
		o.NoPortForwarding = false
	}
	if agent {
		o.NoAgentForwarding = false
	}
	return o, nil
}

// parsePermits reads the value of a permitopen ("host:port") or, with
// listen set, permitlisten ("[host:]port") option: a comma-separated list
// of entries, port "*" for any, IPv6 addresses in brackets, or "none"
// (returned as a nil list). As in sshd, no name is looked up: "localhost"
// and "127.0.0.1" are different entries.
func parsePermits(value string, listen bool) ([]Permit, error) {
	if value == "none" {
		return nil, nil
	}
	want := "host:port"
	if listen {
		want = "[host:]port"
	}
	var out []Permit
	for _, e := range strings.Split(value, ",") {
		e = strings.TrimSpace(e)
		if listen && !strings.Contains(e, ":") {
			e = "*:" + e // a bare port listens on any address (sshd)
		}
		host, port, err := net.SplitHostPort(e)
		if err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("%q is not %s (port may be *, IPv6 in brackets)", e, want)
		}
		p := Permit{Host: strings.ToLower(host), Port: AnyPort}
		if port != "*" {
			n, err := strconv.Atoi(port)
			if err != nil || n < 1 || n > 65535 {
				return nil, fmt.Errorf("%q: port %q is not 1-65535 or *", e, port)
			}
			p.Port = n
		}
		out = append(out, p)
	}
	return out, nil
}

// OpenAllowed reports whether ssh -L may connect to host:port under the
// key's permitopen options: the host must be the one listed (or "*") and
// the port too, as sshd compares them (channels.c open_match), with no
// name lookup.
func (o Options) OpenAllowed(host string, port uint32) bool {
	if o.PermitOpen == nil {
		return true
	}
	host = strings.ToLower(host)
	for _, p := range o.PermitOpen {
		if (p.Port == AnyPort || uint32(p.Port) == port) && (p.Host == "*" || p.Host == host) {
			return true
		}
	}
	return false
}

// ListenAllowed reports whether ssh -R may listen on bind:port under the
// key's permitlisten options. bind is the address as the client sent it
// ("localhost" for a plain -R PORT:…, "" for *:PORT), matched against
// each entry's host as a pattern (* and ?), as sshd does
// (channels.c remote_open_match); port 0 (allocate one) is allowed only
// by a "*" port.
func (o Options) ListenAllowed(bind string, port uint32) bool {
	if o.PermitListen == nil {
		return true
	}
	bind = strings.ToLower(bind)
	for _, p := range o.PermitListen {
		if p.Port != AnyPort && uint32(p.Port) != port {
			continue
		}
		if ok, _ := path.Match(p.Host, bind); ok {
			return true
		}
	}
	return false
}

// parseExpiry reads sshd's expiry-time format.
func parseExpiry(v string) (time.Time, error) {
	for _, layout := range []string{"20060102150405", "200601021504", "20060102"} {
		if len(v) == len(layout) {
			return time.ParseInLocation(layout, v, time.Local)
		}
	}
	return time.Time{}, errors.New("bad length")
}

// Expired reports whether the key's expiry-time has passed.
func (o Options) Expired(now time.Time) bool { return !o.Expiry.IsZero() && !now.Before(o.Expiry) }

// FromAllowed reports whether addr (an IP) matches the from= patterns:
// sshd's pattern-list, with * and ? wildcards, CIDR blocks, and ! negation
// (a matching negated pattern refuses outright).
func (o Options) FromAllowed(addr string) bool {
	if len(o.From) == 0 {
		return true
	}
	ip := net.ParseIP(addr)
	ok := false
	for _, p := range o.From {
		neg := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(p, "!")
		var match bool
		if _, n, err := net.ParseCIDR(p); err == nil {
			match = ip != nil && n.Contains(ip)
		} else {
			match, _ = path.Match(p, addr)
		}
		if match && neg {
			return false
		}
		ok = ok || match
	}
	return ok
}
