package config

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jailgate/jailgate/jail"
)

var update = flag.Bool("update", false, "rewrite the golden .err files")

// fixture makes the rootfs directories the test configs name under $ROOT
// and returns a replacer for $ROOT and $DATA (testdata, absolute).
func fixture(t testing.TB) *strings.Replacer {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"alice", "bob", "carol", "srv/jails/alice", "srv/jails/bob"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Symlink(filepath.Join(root, "bob"), filepath.Join(root, "link"))
	data, _ := filepath.Abs("testdata")
	return strings.NewReplacer("$ROOT", root, "$DATA", data)
}

// TestBadGolden parses testdata/bad/*.yaml and compares every reported
// problem with the matching .err file ($ROOT and $DATA stand for the
// temporary paths). Run with -update to rewrite the .err files.
func TestBadGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/bad/*.yaml")
	if len(files) == 0 {
		t.Fatal("no golden inputs")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := fixture(t)
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Parse(f, []byte(r.Replace(string(raw))))
			if err == nil {
				t.Fatal("parsed without error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("errors.Is(err, ErrInvalid) = false for %v", err)
			}
			got := err.Error() + "\n"
			// Put the placeholders back so the golden file is stable.
			root := r.Replace("$ROOT")
			data := r.Replace("$DATA")
			got = strings.NewReplacer(root, "$ROOT", data, "$DATA").Replace(got)
			golden := strings.TrimSuffix(f, ".yaml") + ".err"
			if *update {
				os.WriteFile(golden, []byte(got), 0o644)
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./config -update)", err)
			}
			if got != string(want) {
				t.Errorf("problems differ from %s\ngot:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}

func TestExampleParses(t *testing.T) {
	r := fixture(t)
	raw, err := os.ReadFile("example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	root := r.Replace("$ROOT")
	text := strings.ReplaceAll(string(raw), "/srv/jails/", root+"/srv/jails/")
	c, err := Parse(filepath.Join(mustAbs(t, "testdata"), "example.yaml"), []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	a, b := c.Users["alice"], c.Users["bob"]
	if a == nil || b == nil {
		t.Fatalf("users = %v", c.Names())
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"listen", c.Listen, "0.0.0.0:2222"},
		{"host_key", c.HostKey, "/var/lib/jailgate/ssh_host_ed25519_key"},
		{"alice rootfs from the defaults template", a.Rootfs, root + "/srv/jails/alice"},
		{"alice hostname", a.Hostname, "alice-lab"},
		{"alice environment", a.Environment, EnvTenant},
		{"bob environment", b.Environment, EnvSession},
		{"bob keys from keys_file", len(b.Keys), 1},
		{"memory", a.Limits.Memory, int64(512 << 20)},
		{"pids", a.Limits.Pids, int64(256)},
		{"cpu", a.Limits.CPU, 1.0},
		{"linger", a.Linger, time.Duration(0)},
		{"id range", a.IDRange, uint32(65536)},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}
	if !c.Keys.Authorize("alice", a.Keys[0].Key) || c.Keys.Authorize("bob", a.Keys[0].Key) {
		t.Error("key index: alice's key must authorize alice and only alice")
	}
	if s := a.Summary(); !strings.HasPrefix(s, "alice: 1 key, rootfs ") || !strings.Contains(s, "memory=512MiB pids=256 cpu=1") {
		t.Errorf("summary %q", s)
	}
}

func TestDefaultsWhenAbsent(t *testing.T) {
	r := fixture(t)
	c, err := Parse("min.yaml", []byte(r.Replace("users:\n  alice:\n    keys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a\"]\n    rootfs: $ROOT/alice\n")))
	if err != nil {
		t.Fatal(err)
	}
	u := c.Users["alice"]
	if c.Listen != DefaultListen || c.StateDir != DefaultStateDir || u.Shell != "/bin/bash" || u.Hostname != "alice" ||
		u.Environment != EnvTenant || u.Network != "none" || u.Limits != (jail.Limits{Pids: DefaultPids, Memory: hostMemory() / 2, SwapAsMemory: true, PTYs: DefaultPTYs, Tmp: hostMemory() / 2}) {
		t.Errorf("defaults not applied: %+v %+v", c, u)
	}
	if !slices.Equal(c.Server.Ciphers, DefaultCiphers) {
		t.Errorf("server.ciphers = %v, want the defaults %v", c.Server.Ciphers, DefaultCiphers)
	}
	if _, err := Parse("empty.yaml", nil); err != nil {
		t.Errorf("an empty config (no tenants) is valid, got %v", err)
	}
}

func TestSizes(t *testing.T) {
	for in, want := range map[string]int64{"1536": 1536, "512MiB": 512 << 20, "1 GiB": 1 << 30, "2KB": 2000, "0": 0} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"lots", "-1", "1.5GiB", "", "5M"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
	if FormatSize(512<<20) != "512MiB" || FormatSize(1536) != "1536B" {
		t.Error("FormatSize")
	}
}

func mustAbs(t testing.TB, p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/bad/*.yaml")
	files = append(files, "example.yaml")
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data)
		if err == nil && c == nil {
			t.Fatal("nil config without an error")
		}
		if err != nil && !errors.Is(err, ErrInvalid) && !strings.Contains(err.Error(), "fuzz.yaml") {
			t.Fatalf("error without position: %v", err)
		}
	})
}

// TestYAMLErrorLine: a YAML syntax error names the line it is on, or for
// a parser error the line of the construct it is in (yaml.v3 counts its
// parser errors' lines from 0, its scanner errors' from 1).
func TestYAMLErrorLine(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		line int
	}{
		{"listen: x\nusers:\n  alice:\n    keys: [unclosed\n    rootfs: /x\n", 4}, // parser: flow sequence
		{"listen: x\nusers: {alice: 1\n", 2},                                      // parser: flow mapping
		{"listen: x\nusers:\n  alice:\n    rootfs: /x\n   bad: 1\n", 3},           // parser: the block mapping it is in
		{"listen: x\nusers:\n  alice: x: y\n", 3},                                 // scanner: mapping values
		{"listen: x\n\tusers: {}\n", 2},                                           // scanner: tab
	} {
		_, err := Parse("c.yaml", []byte(tc.yaml))
		if want := fmt.Sprintf("c.yaml:%d: ", tc.line); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%q: %v, want it to start %q", tc.yaml, err, want)
		}
	}
}

func TestLimitsText(t *testing.T) {
	for _, tc := range []struct {
		l    jail.Limits
		want string
	}{
		{jail.Limits{}, "none"},
		{jail.Limits{Memory: 512 << 20, Pids: 256, CPU: 1.5}, "memory=512MiB pids=256 cpu=1.5"},
		{jail.Limits{MemorySwap: 1 << 30, IOWeight: 200}, "memory_swap=1GiB io_weight=200"},
	} {
		if got := LimitsText(tc.l); got != tc.want {
			t.Errorf("LimitsText(%+v) = %q, want %q", tc.l, got, tc.want)
		}
	}
}
