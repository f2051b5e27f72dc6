//go:build linux

package rootfs

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseDpkgS(t *testing.T) {
	out := "bash: /bin/bash\n" +
		"diversion by dash from: /bin/sh\n" +
		"diversion by dash to: /bin/sh.distrib\n" +
		"libssl3:amd64, openssl: /usr/lib/x86_64-linux-gnu/libssl.so.3\n" +
		"dpkg-query: no path found matching pattern /usr/bin/nosuch\n"
	got := parseDpkgS(out)
	want := map[string][]string{
		"/bin/bash":                             {"bash"},
		"/usr/lib/x86_64-linux-gnu/libssl.so.3": {"libssl3:amd64", "openssl"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseDpkgS = %v, want %v", got, want)
	}
}

func TestPackageData(t *testing.T) {
	for p, want := range map[string]bool{
		"/usr/lib/git-core/git-upload-pack":       true,
		"/usr/share/git-core/templates/info/x":    true,
		"/usr/share/doc/git/copyright":            false,
		"/usr/share/man/man1/git.1.gz":            false,
		"/usr/share/locale/de/LC_MESSAGES/git.mo": false,
		"/etc/bash.bashrc":                        false,
		"/usr/lib/systemd/system/x.service":       false,
	} {
		if got := packageData(p); got != want {
			t.Errorf("packageData(%s) = %v, want %v", p, got, want)
		}
	}
}

func TestOwnerPaths(t *testing.T) {
	got := strings.Join(ownerPaths("/usr/bin/awk", "/usr/bin/mawk"), " ")
	if want := "/usr/bin/awk /bin/awk /usr/bin/mawk /bin/mawk"; got != want {
		t.Errorf("ownerPaths = %s, want %s", got, want)
	}
}

func TestSizeText(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 31 << 20: "31.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := sizeText(n); got != want {
			t.Errorf("sizeText(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestDataTree copies a host directory as data: files everyone may read
// and links come, a file only its owner may read, a fifo and the skipped
// names do not, and the ELF files are queued for their libraries.
func TestDataTree(t *testing.T) {
	requireRoot(t)
	host := t.TempDir()
	write := func(name, data string, perm os.FileMode) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(host, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(host, name), []byte(data), perm); err != nil {
			t.Fatal(err)
		}
	}
	write("lib/mod.py", "x = 1\n", 0o644)
	write("lib/secret", "key", 0o600)
	write("lib/config-3/libpython.a", "big", 0o644)
	elfData, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	write("lib/ext.so", string(elfData), 0o755)
	if err := os.Symlink("mod.py", filepath.Join(host, "lib/alias.py")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/nonexistent-jg", filepath.Join(host, "lib/dangling")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(host, "lib/fifo"), 0o644); err != nil {
		t.Fatal(err)
	}

	dir := filepath.Join(t.TempDir(), "root")
	root, st, err := openTarget(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	b := &builder{root: root, libs: newLibResolver(), uid: int(st.Uid), gid: int(st.Gid), done: map[string]bool{}}
	var queue []object
	skip := func(n string) bool { return strings.HasPrefix(n, "config-") }
	if err := b.dataTree(filepath.Join(host, "lib"), skip, &queue); err != nil {
		t.Fatal(err)
	}
	in := func(name string) string { return filepath.Join(dir, host, "lib", name) }
	for _, name := range []string{"mod.py", "ext.so", "alias.py"} {
		if _, err := os.Stat(in(name)); err != nil {
			t.Errorf("%s not copied: %v", name, err)
		}
	}
	for _, name := range []string{"secret", "config-3", "fifo"} {
		if _, err := os.Lstat(in(name)); err == nil {
			t.Errorf("%s copied", name)
		}
	}
	if len(queue) != 1 || queue[0].real != filepath.Join(host, "lib/ext.so") {
		t.Errorf("queued %v, want only ext.so", queue)
	}
}

// TestAskInterpreterRefuses: only a binary root owns and no one else may
// write is run to ask it where its library is.
func TestAskInterpreterRefuses(t *testing.T) {
	requireRoot(t)
	data, err := os.ReadFile("/bin/echo")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "python3")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if dirs, err := askInterpreter(bin, []string{"/usr"}); err != nil || len(dirs) != 1 || dirs[0] != "/usr" {
		t.Fatalf("root's own binary: %v, %v", dirs, err)
	}
	if err := os.Chmod(bin, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := askInterpreter(bin, []string{"/usr"}); err == nil {
		t.Error("a world-writable binary was run")
	}
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(bin, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	if _, err := askInterpreter(bin, []string{"/usr"}); err == nil {
		t.Error("a binary another user owns was run")
	}
}
